#pragma once

// Per-source budgets: what one client address (the source address of its packets, any port) may
// cost the registry. Spoofing makes a source address worth little as an identity, but it is the
// right key for what it protects: the REGISTER budget bounds how fast one address can churn the
// registry, the reply budget bounds how much a forged source (the victim of a reflection) can be
// sent, and the log budgets bound how many lines one address can write.
//
// The table is bounded: sources idle long enough to be back at full budget are forgotten
// (Sweep), and past kMaxSources the newcomers share one overflow state, so a flood from forged
// random addresses costs a fixed amount of memory. No I/O, no clock: callers pass `now`.

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <unordered_map>

#include "libcore/log/log.h"

namespace registryd {

// A token bucket: `rate` tokens per second, at most `burst`. A rate of 0 means no limit.
class TokenBucket {
 public:
  bool Take(double n, double rate, double burst, double now);
  // True when the bucket is full again at `now` (forgetting it changes nothing).
  bool Full(double rate, double burst, double now) const;

 private:
  double tokens_ = -1;  // < 0: not used yet, full
  double last_ = 0;
};

struct SourceLimits {
  double registers_per_second = 20;       // REGISTER requests; 0: no limit
  double reply_bytes_per_second = 65536;  // UDP reply bytes; 0: no limit
  // Bursts: 5 seconds' worth of REGISTERs (at least one), 1 second's worth of reply bytes (at
  // least one largest reply, a 15,000-byte LIST).
  static constexpr double kRegisterBurstSeconds = 5;
  static constexpr double kReplyBurstSeconds = 1;
  double register_burst() const;
  double reply_burst() const;
};

inline constexpr size_t kMaxSources = 65536;
// Per source, at most this many requests are logged (debug) and this many warnings written per
// interval; the rest are counted and reported in one line.
inline constexpr int kRequestLogBurst = 50;
inline constexpr int kWarningBurst = 5;
inline constexpr double kLogInterval = 10.0;

class Sources {
 public:
  struct State {
    TokenBucket registers;
    TokenBucket reply_bytes;
    core::log::RateLimit requests{kRequestLogBurst, kLogInterval};
    core::log::RateLimit warnings{kWarningBurst, kLogInterval};
    double last_seen = 0;
    uint64_t refused_registers = 0;  // since the last warning about it
    uint64_t refused_replies = 0;
    uint64_t reply_bytes_refused = 0;
  };

  explicit Sources(SourceLimits limits) : limits_(limits) {}
  Sources(const Sources&) = delete;
  Sources& operator=(const Sources&) = delete;

  // The state of `host`, created on first use. Valid until the next Sweep().
  State& Get(std::string_view host, double now);
  bool AllowRegister(State& s, double now);
  bool AllowReply(State& s, size_t bytes, double now);

  // Forgets the sources idle for at least kLogInterval whose buckets are full again; calls
  // `report(host, state)` first for those with suppressed lines still untold.
  template <typename Report>
  size_t Sweep(double now, Report&& report) {
    size_t dropped = 0;
    for (auto it = table_.begin(); it != table_.end();) {
      if (Idle(it->second, now)) {
        report(it->first, it->second);
        it = table_.erase(it);
        ++dropped;
      } else {
        ++it;
      }
    }
    return dropped;
  }

  size_t size() const { return table_.size(); }
  const SourceLimits& limits() const { return limits_; }
  void set_limits(SourceLimits limits) { limits_ = limits; }

 private:
  bool Idle(const State& s, double now) const;

  // Transparent: looking a host up needs no std::string copy.
  struct Hash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  SourceLimits limits_;
  std::unordered_map<std::string, State, Hash, std::equal_to<>> table_;
  State overflow_;  // shared by the sources past kMaxSources
};

}  // namespace registryd
