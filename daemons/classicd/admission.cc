#include "daemons/classicd/admission.h"

#include <cstring>

#include <arpa/inet.h>
#include <netinet/in.h>

namespace classicd {

std::string Admission::PeerKey(const std::string& host) {
  in_addr a4{};
  if (inet_pton(AF_INET, host.c_str(), &a4) == 1) return host;
  in6_addr a6{};
  if (inet_pton(AF_INET6, host.c_str(), &a6) != 1) return {};
  char text[INET6_ADDRSTRLEN] = {};
  if (IN6_IS_ADDR_V4MAPPED(&a6)) {
    std::memcpy(&a4, &a6.s6_addr[12], 4);
    return inet_ntop(AF_INET, &a4, text, sizeof text) ? text : host;
  }
  std::memset(&a6.s6_addr[8], 0, 8);
  if (!inet_ntop(AF_INET6, &a6, text, sizeof text)) return host;
  return std::string(text) + "/64";
}

void Admission::set_limits(Limits limits) {
  std::lock_guard<std::mutex> lock(mu_);
  limits_ = limits;
}

Admission::Decision Admission::Admit(const std::string& host, bool handshake) {
  const std::string key = PeerKey(host);
  std::lock_guard<std::mutex> lock(mu_);
  const int64_t active = active_.load(std::memory_order_relaxed);
  if (active >= limits_.max_connections) return {Verdict::kTooMany, active};
  if (handshake && limits_.max_handshakes > 0 &&
      static_cast<int64_t>(handshakes_.size()) >= limits_.max_handshakes) {
    // At the limit: the handshakes past their deadline are dropped first (only here, so that
    // a connection below the limit costs no walk).
    const auto now = std::chrono::steady_clock::now();
    std::erase_if(handshakes_, [now](const auto& h) { return h.second <= now; });
    const auto handshaking = static_cast<int64_t>(handshakes_.size());
    if (handshaking >= limits_.max_handshakes) return {Verdict::kTooManyHandshakes, handshaking};
  }
  if (limits_.max_per_peer > 0 && !key.empty()) {
    auto it = open_.find(key);
    const int64_t from_peer = it == open_.end() ? 0 : it->second;
    if (from_peer >= limits_.max_per_peer) return {Verdict::kTooManyFromPeer, from_peer};
  }
  if (!key.empty()) ++open_[key];
  active_.store(active + 1, std::memory_order_relaxed);
  Decision d{Verdict::kAdmitted, active};
  if (handshake) {
    d.handshake = ++next_slot_;
    handshakes_.emplace(d.handshake, std::chrono::steady_clock::time_point::max());
  }
  return d;
}

void Admission::HandshakeDeadline(uint64_t slot, std::chrono::steady_clock::time_point until) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = handshakes_.find(slot);
  if (it != handshakes_.end()) it->second = until;
}

void Admission::HandshakeEnded(uint64_t slot) {
  std::lock_guard<std::mutex> lock(mu_);
  handshakes_.erase(slot);
}

int64_t Admission::handshaking() const {
  std::lock_guard<std::mutex> lock(mu_);
  return static_cast<int64_t>(handshakes_.size());
}

int64_t Admission::Release(const std::string& host) {
  const std::string key = PeerKey(host);
  std::lock_guard<std::mutex> lock(mu_);
  if (!key.empty()) {
    auto it = open_.find(key);
    if (it != open_.end() && --it->second <= 0) open_.erase(it);
  }
  const int64_t active = active_.load(std::memory_order_relaxed) - 1;
  active_.store(active, std::memory_order_relaxed);
  served_.fetch_add(1, std::memory_order_relaxed);
  return active;
}

size_t Admission::peers() const {
  std::lock_guard<std::mutex> lock(mu_);
  return open_.size();
}

bool SharedRateLimit::Allow(double now_seconds, uint64_t* suppressed) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!limit_.Allow(now_seconds)) return false;
  *suppressed = limit_.TakeSuppressed();
  return true;
}

}  // namespace classicd
