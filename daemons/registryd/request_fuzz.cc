// libFuzzer target: the registry's request parser and state. The input is a sequence of
// datagrams split on "|REQ|"; the first byte of each picks the peer host (low 2 bits), the
// transport's reply limits (bit 2) and how far the clock moves (the rest). Each datagram goes
// through the same Handler the daemon uses, against a small registry.
//
// Invariants: no crash; the fast QUERY path accepts only what the general parser reads as the
// same QUERY; every reply is a complete brine value within the transport's reply limit; the
// registry never holds more entries than its cap.

#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "daemons/registryd/registry.h"
#include "daemons/registryd/request.h"
#include "libcore/brine/brine.h"

namespace {

void Check(bool ok) {
  if (!ok) std::abort();
}

constexpr size_t kCap = 8;
constexpr size_t kCapPerHost = 3;
constexpr const char* kHosts[] = {"127.0.0.1", "10.0.0.2", "::ffff:127.0.0.1", "::1"};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static constexpr std::string_view kSep = "|REQ|";
  std::string_view in(reinterpret_cast<const char*>(data), size);
  registryd::Registry registry(kCap, /*timeout_seconds=*/60, kCapPerHost);
  registryd::SourceLimits source_limits;
  source_limits.registers_per_second = 2;
  source_limits.reply_bytes_per_second = 4000;
  registryd::Sources sources(source_limits);
  const registryd::ReplyLimits udp{registryd::kMaxReplyBytes, registryd::kMaxUdpListReplyBytes,
                                   true};
  const registryd::ReplyLimits tcp{};
  registryd::Handler udp_handler(registry, sources, /*listing=*/true, udp, core::log::Logger());
  registryd::Handler tcp_handler(registry, sources, /*listing=*/false, tcp, core::log::Logger());
  double now = 0;
  size_t start = 0;
  while (start < in.size()) {
    const size_t end = in.find(kSep, start);
    std::string_view chunk =
        in.substr(start, end == std::string_view::npos ? std::string_view::npos : end - start);
    start = end == std::string_view::npos ? in.size() : end + kSep.size();
    if (chunk.empty()) continue;
    const auto control = static_cast<uint8_t>(chunk[0]);
    // The daemon reads at most this much of a datagram or TCP request.
    std::string_view request = chunk.substr(1, registryd::kMaxRequestBytes);
    now += control >> 3;

    if (auto name = registryd::FastQueryName(request)) {
      auto parsed = registryd::ParseRequest(request);
      Check(parsed.has_value());
      Check(parsed->command == registryd::Command::kQuery);
      Check(parsed->names.size() == 1 && parsed->names[0] == *name && !parsed->name_is_bytes);
    }

    const bool use_udp = (control & 4) != 0;
    registryd::Handler& handler = use_udp ? udp_handler : tcp_handler;
    const registryd::ReplyLimits& limits = use_udp ? udp : tcp;
    const char* host = kHosts[control & 3];
    auto reply = handler.Handle(request, core::transport::PeerAddress(host, "fuzz"), now);
    if (reply) {
      Check(reply->size() <= std::max(limits.query, limits.list));
      auto value = core::brine::Load(*reply);
      Check(value.has_value());
    }
    Check(registry.entries() <= kCap);
    Check(registry.entries_of(registryd::RegistryHost(host)) <= kCapPerHost);
  }
  return 0;
}
