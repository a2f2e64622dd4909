#include "daemons/classicd/admission.h"

namespace classicd {

void Admission::set_limits(Limits limits) {
  std::lock_guard<std::mutex> lock(mu_);
  limits_ = limits;
}

Admission::Decision Admission::Admit(const std::string& host) {
  std::lock_guard<std::mutex> lock(mu_);
  const int64_t active = active_.load(std::memory_order_relaxed);
  if (active >= limits_.max_connections) return {Verdict::kTooMany, active};
  if (limits_.max_per_peer > 0) {
    auto it = open_.find(host);
    const int64_t from_peer = it == open_.end() ? 0 : it->second;
    if (from_peer >= limits_.max_per_peer) return {Verdict::kTooManyFromPeer, from_peer};
  }
  ++open_[host];
  active_.store(active + 1, std::memory_order_relaxed);
  return {Verdict::kAdmitted, active};
}

int64_t Admission::Release(const std::string& host) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = open_.find(host);
  if (it != open_.end() && --it->second <= 0) open_.erase(it);
  const int64_t active = active_.load(std::memory_order_relaxed) - 1;
  active_.store(active, std::memory_order_relaxed);
  served_.fetch_add(1, std::memory_order_relaxed);
  return active;
}

size_t Admission::peers() const {
  std::lock_guard<std::mutex> lock(mu_);
  return open_.size();
}

}  // namespace classicd
