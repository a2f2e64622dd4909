#include "daemons/registryd/sources.h"

#include <algorithm>

#include "daemons/registryd/request.h"

namespace registryd {

bool TokenBucket::Take(double n, double rate, double burst, double now) {
  if (rate <= 0) return true;
  if (tokens_ < 0) {
    tokens_ = burst;
  } else {
    tokens_ = std::min(burst, tokens_ + (now - last_) * rate);
  }
  last_ = now;
  if (tokens_ < n) return false;
  tokens_ -= n;
  return true;
}

bool TokenBucket::Full(double rate, double burst, double now) const {
  return rate <= 0 || tokens_ < 0 || tokens_ + (now - last_) * rate >= burst;
}

double SourceLimits::register_burst() const {
  return std::max(1.0, registers_per_second * kRegisterBurstSeconds);
}

double SourceLimits::reply_burst() const {
  return std::max(static_cast<double>(kMaxUdpListReplyBytes),
                  reply_bytes_per_second * kReplyBurstSeconds);
}

Sources::State& Sources::Get(std::string_view host, double now) {
  auto it = table_.find(host);
  if (it == table_.end()) {
    if (table_.size() >= kMaxSources) {
      overflow_.last_seen = now;
      return overflow_;
    }
    it = table_.emplace(std::string(host), State{}).first;
  }
  it->second.last_seen = now;
  return it->second;
}

bool Sources::AllowRegister(State& s, double now) {
  return s.registers.Take(1, limits_.registers_per_second, limits_.register_burst(), now);
}

bool Sources::AllowReply(State& s, size_t bytes, double now) {
  return s.reply_bytes.Take(static_cast<double>(bytes), limits_.reply_bytes_per_second,
                            limits_.reply_burst(), now);
}

bool Sources::Idle(const State& s, double now) const {
  return now - s.last_seen >= kLogInterval &&
         s.registers.Full(limits_.registers_per_second, limits_.register_burst(), now) &&
         s.reply_bytes.Full(limits_.reply_bytes_per_second, limits_.reply_burst(), now);
}

}  // namespace registryd
