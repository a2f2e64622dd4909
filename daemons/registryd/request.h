#pragma once

// Registry requests (docs/protocol.md §10): parsing the brine ('RPYC', CMD, ARGS) tuple, running it
// against a Registry, and encoding the reply within the size the reference clients read.
//
// Reply size limits: the clients read 1500 bytes (15,000 for a UDP LIST). A reply that would be
// larger is truncated to a shorter *valid* tuple instead of being cut mid-value:
//   QUERY keeps the most recently registered servers that fit (still sent oldest first),
//   LIST keeps the first names (first-registration order) that fit;
// each truncation is logged as a warning.

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "daemons/registryd/registry.h"
#include "daemons/registryd/sources.h"
#include "libcore/base/result.h"
#include "libcore/brine/value.h"
#include "libcore/log/log.h"
#include "libcore/transport/address.h"

namespace registryd {

inline constexpr size_t kMaxRequestBytes = 1500;  // what the reference reads per request
inline constexpr size_t kMaxReplyBytes = 1500;
inline constexpr size_t kMaxUdpListReplyBytes = 15000;
inline constexpr size_t kMaxNameBytes = 255;  // longer service names are refused
inline constexpr size_t kMaxPortBytes = 128;  // brine size of a port (an int or a socket path)

enum class Command { kQuery, kRegister, kUnregister, kList };

struct Request {
  Command command = Command::kQuery;
  std::vector<std::string> names;  // QUERY: the one name; REGISTER: the aliases, as sent
  bool name_is_bytes = false;      // QUERY of a bytes name: matches nothing, like the reference
  std::string port;                // REGISTER/UNREGISTER: brine encoding of the port
  // REGISTER (names, port, host) / UNREGISTER (port, host), an rpyc-registryd extension
  // (docs/differences.md): the host to record instead of the packet's source, canonical (an
  // address as inet_ntop writes it, a name lower-cased); empty when not given.
  std::string advertised_host;
  std::string port_text;        // str(port), for logs
  core::brine::Value list_arg;  // LIST: the filter_host argument, looked at only if listing
};

// Errors are Protocol errors whose message says what was wrong, for the warning log line.
core::Result<Request> ParseRequest(std::string_view data);

// The fast path: the name of a canonical QUERY (the exact bytes rpyc's clients send, with a str
// name), or nullopt for anything else, which then takes the general path. It accepts only input
// the general path would read the same way.
std::optional<std::string_view> FastQueryName(std::string_view data);

// ASCII upper-casing (the reference uses str.upper(); non-ASCII letters are kept as they are).
std::string Upper(std::string_view s);

// An advertised host: an IPv4 or IPv6 address literal (returned in inet_ntop's form, an IPv4-mapped
// one as IPv4) or a DNS name (LDH labels of 1-63 bytes, at most 253 bytes, returned lower-cased);
// nullopt for anything else.
std::optional<std::string> CanonicalHost(std::string_view host);

// The host a registration is recorded under: an IPv4 peer of a dual-stack (IPv6) socket shows as
// "::ffff:a.b.c.d" and is recorded as "a.b.c.d", the address an IPv4-only client can reach and the
// one the same server registered over plain IPv4 gets. Every other host is returned as it is.
std::string_view RegistryHost(std::string_view host);

struct ReplyLimits {
  size_t query = kMaxReplyBytes;
  size_t list = kMaxReplyBytes;
  // UDP: replies count against the source's reply budget (a forged source address cannot be
  // sent more than reply-bytes-per-source per second). TCP sources cannot be forged.
  bool per_source_budget = false;
};

// Runs requests for one transport ("REGSRV/UDP/18811", "REGSRV/TCP/18811") against the shared
// registry, logging like the reference plus structured fields. Every peer-supplied string in a
// log line is escaped (core::log::Escape). Per source address (see Sources): REGISTERs beyond
// the source's rate get no reply, and so do UDP replies beyond its byte budget; at most
// kRequestLogBurst requests and kWarningBurst warnings are logged per kLogInterval.
class EtcdLink;
class DnssdLink;

class Handler {
 public:
  // `registry` and `sources` must outlive the handler.
  Handler(Registry& registry, Sources& sources, bool listing, ReplyLimits limits,
          core::log::Logger log)
      : registry_(registry),
        sources_(sources),
        listing_(listing),
        limits_(limits),
        log_(std::move(log)) {}

  // The reply bytes (valid until the next call), or nullopt when nothing must be sent (bad
  // request: one warning naming the peer; registration refused because the registry, or the
  // source's share of it, is full; the source is over its REGISTER rate or reply budget).
  std::optional<std::string_view> Handle(std::string_view data,
                                         const core::transport::PeerAddress& peer, double now);

  void set_listing(bool on) { listing_ = on; }
  // Sharing through etcd: REGISTER and UNREGISTER are passed on, QUERY and LIST also answer
  // from its mirror (this registry's servers first). nullptr (the default): off. The link must
  // outlive the handler.
  void set_link(EtcdLink* link) { link_ = link; }
  // Publishing through avahi-daemon: REGISTER and UNREGISTER are passed on. nullptr (the
  // default): off. The link must outlive the handler.
  void set_dnssd(DnssdLink* dnssd) { dnssd_ = dnssd; }
  const core::log::Logger& log() const { return log_; }

  // Logs a warning about `peer` ("bad request from PEER: WHAT", WHAT escaped), rate-limited per
  // source and overall: a flood of garbage does not flood the log.
  void WarnPeer(const core::transport::PeerAddress& peer, const std::string& what, double now);

 private:
  std::optional<std::string_view> Dispatch(std::string_view data,
                                           const core::transport::PeerAddress& peer,
                                           Sources::State& source, double now);
  // True when a warning about `source` may be written now (per source, then overall); then
  // also writes the counts of the warnings suppressed before it.
  bool AllowWarning(const core::transport::PeerAddress& peer, Sources::State& source, double now);
  std::string_view Query(std::string_view raw_name, bool name_is_bytes,
                         const core::transport::PeerAddress& peer, double now);
  std::optional<std::string_view> Register(const Request& r,
                                           const core::transport::PeerAddress& peer,
                                           Sources::State& source, double now);
  std::optional<std::string_view> List(const Request& r, const core::transport::PeerAddress& peer,
                                       double now);

  Registry& registry_;
  Sources& sources_;
  EtcdLink* link_ = nullptr;
  DnssdLink* dnssd_ = nullptr;
  bool listing_;
  ReplyLimits limits_;
  core::log::Logger log_;
  bool log_request_ = false;  // debug lines for the current request (within the source's budget)
  core::log::RateLimit warn_limit_{20, 10.0};
  core::log::RateLimit full_limit_{1, 10.0};
  // QUERY replies for names the etcd mirror also holds (local servers merged with mirrored
  // ones), kept while neither the registry nor the mirror changes.
  struct MergedReply {
    uint64_t registry_version = 0;
    uint64_t mirror_version = 0;
    double fresh_until = 0;  // Registry::FreshUntil(): then a local server is stale
    std::string bytes;
    size_t dropped = 0;
    size_t total = 0;
  };
  static constexpr size_t kMaxMergedReplies = 4096;
  std::map<std::string, MergedReply, std::less<>> merged_;
  std::vector<const Server*> servers_;  // scratch, reused: no allocation per QUERY
  std::string reply_;                   // the last reply
  char name_[kMaxRequestBytes];         // scratch: the upper-cased QUERY name
};

// The int port of a brine-encoded port value (Server::port), 0 when it is not an int from 1 to
// 65535 (a unix socket path): only int ports are shared through etcd and DNS-SD.
uint16_t IntPort(const std::string& brine_port);

// "host:port", with an IPv6 host in brackets ("[::1]:18811").
std::string HostPort(std::string_view host, std::string_view port);

// Encoders, exposed for tests: a reply tuple truncated to at most `max_bytes`.
// *dropped gets the number of items left out. Servers [0, local) keep the newest that fit; the
// rest (mirrored from etcd, in order of preference) follow while they fit, and only when every
// local one fits.
void EncodeServers(const std::vector<const Server*>& servers, size_t max_bytes, size_t* dropped,
                   std::string* out, size_t local = SIZE_MAX);
std::string EncodeNames(const std::vector<std::string>& names, size_t max_bytes, size_t* dropped);

}  // namespace registryd
