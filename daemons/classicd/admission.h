#pragma once

// Who may open a connection now: at most `max_connections` open in all, and at most
// `max_per_peer` from one peer host (0: no per-peer cap). Admit() counts a connection in,
// Release() counts it out; both may come from any thread. The limits may change (a reload): they
// apply to later Admit()s, and connections already open stay.

#include <atomic>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>

namespace classicd {

class Admission {
 public:
  struct Limits {
    int64_t max_connections = 1000;
    int64_t max_per_peer = 0;  // 0: no limit
  };
  enum class Verdict { kAdmitted, kTooMany, kTooManyFromPeer };
  struct Decision {
    Verdict verdict = Verdict::kAdmitted;
    // Connections open before this one: in all (kAdmitted, kTooMany) or from the peer
    // (kTooManyFromPeer), for the log line.
    int64_t open = 0;
    bool admitted() const { return verdict == Verdict::kAdmitted; }
  };

  explicit Admission(Limits limits) : limits_(limits) {}
  Admission(const Admission&) = delete;
  Admission& operator=(const Admission&) = delete;

  void set_limits(Limits limits);

  Decision Admit(const std::string& host);
  // Counts out a connection Admit() let in from `host`; returns the number still open.
  int64_t Release(const std::string& host);

  int64_t active() const { return active_.load(std::memory_order_relaxed); }
  uint64_t served() const { return served_.load(std::memory_order_relaxed); }
  // Hosts with a connection open (tests).
  size_t peers() const;

 private:
  mutable std::mutex mu_;
  Limits limits_;                        // guarded by mu_
  std::map<std::string, int64_t> open_;  // guarded by mu_: connections open per host
  std::atomic<int64_t> active_{0};       // written under mu_
  std::atomic<uint64_t> served_{0};      // written under mu_
};

}  // namespace classicd
