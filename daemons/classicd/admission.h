#pragma once

// Who may open a connection now: at most `max_connections` open in all, at most `max_per_peer`
// from one peer (0: no per-peer cap), and at most `max_handshakes` still in their handshake (0: no
// cap). Admit() counts a connection in, HandshakeEnded() counts it out of the handshakes, Release()
// counts it out; all may come from any thread. A handshake is a TLS handshake or an authenticator
// (or both, one after the other); one whose deadline passed (HandshakeDeadline) counts no longer,
// even if what runs it has not returned (an authenticator stuck in the service's code). The limits
// may change (a reload): they apply to later Admit()s, and connections already open stay.
//
// A peer is what one host controls: an IPv4 address, an IPv6 /64 (one subnet hands its hosts
// addresses from a whole /64), an IPv4-mapped IPv6 address as its IPv4 address. A host that is not
// an IP address ("unix": a Unix-socket client) has no per-peer cap.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>

#include "libcore/log/log.h"

namespace classicd {

class Admission {
 public:
  struct Limits {
    int64_t max_connections = 1000;
    int64_t max_per_peer = 64;     // 0: no limit
    int64_t max_handshakes = 256;  // 0: no limit
  };
  enum class Verdict { kAdmitted, kTooMany, kTooManyFromPeer, kTooManyHandshakes };
  struct Decision {
    Verdict verdict = Verdict::kAdmitted;
    // Connections open before this one: in all (kAdmitted, kTooMany), from the peer
    // (kTooManyFromPeer) or in their handshake (kTooManyHandshakes), for the log line.
    int64_t open = 0;
    // kAdmitted with a handshake: the connection's handshake slot, for HandshakeDeadline() and
    // HandshakeEnded() (never 0).
    uint64_t handshake = 0;
    bool admitted() const { return verdict == Verdict::kAdmitted; }
  };

  explicit Admission(Limits limits) : limits_(limits) {}
  Admission(const Admission&) = delete;
  Admission& operator=(const Admission&) = delete;

  // The per-peer key of a host as Peer::host spells it ("10.0.0.1", "fd00::1",
  // "::ffff:10.0.0.1"): "10.0.0.1", "fd00::/64", "10.0.0.1"; empty when it is not an IP address.
  static std::string PeerKey(const std::string& host);

  void set_limits(Limits limits);

  // `handshake`: the connection starts with a handshake whose end this process sees
  // (HandshakeEnded()), and counts against max_handshakes until then.
  Decision Admit(const std::string& host, bool handshake = false);
  // The handshake in `slot` counts no longer than `until` (an authenticator's deadline).
  void HandshakeDeadline(uint64_t slot, std::chrono::steady_clock::time_point until);
  // The handshake in `slot` ended (finished or failed); nothing when it ended already.
  void HandshakeEnded(uint64_t slot);
  // Counts out a connection Admit() let in from `host`; returns the number still open.
  int64_t Release(const std::string& host);

  int64_t active() const { return active_.load(std::memory_order_relaxed); }
  // Handshakes counted (those past their deadline until an Admit() at the limit drops them).
  int64_t handshaking() const;
  uint64_t served() const { return served_.load(std::memory_order_relaxed); }
  // Peers with a connection open (tests).
  size_t peers() const;

 private:
  mutable std::mutex mu_;
  Limits limits_;                        // guarded by mu_
  std::map<std::string, int64_t> open_;  // guarded by mu_: connections open per peer key
  std::atomic<int64_t> active_{0};       // written under mu_
  // guarded by mu_: the handshakes in progress by slot, with their deadline (max(): none)
  std::map<uint64_t, std::chrono::steady_clock::time_point> handshakes_;
  uint64_t next_slot_ = 0;           // guarded by mu_
  std::atomic<uint64_t> served_{0};  // written under mu_
};

// core::log::RateLimit for lines logged from any thread: Allow() says whether to log a line now,
// and when it does after lines were dropped, hands how many in `suppressed` (to log first).
class SharedRateLimit {
 public:
  SharedRateLimit(int burst, double interval_seconds) : limit_(burst, interval_seconds) {}
  bool Allow(double now_seconds, uint64_t* suppressed);

 private:
  std::mutex mu_;
  core::log::RateLimit limit_;  // guarded by mu_
};

}  // namespace classicd
