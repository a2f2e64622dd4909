#include "libcore/daemon/memory.h"

#include <cstdio>

#include <malloc.h>
#include <unistd.h>

namespace core::daemon {

size_t ResidentKib() {
  FILE* f = std::fopen("/proc/self/statm", "r");
  if (f == nullptr) return 0;
  unsigned long size = 0;
  unsigned long resident = 0;
  const int n = std::fscanf(f, "%lu %lu", &size, &resident);
  std::fclose(f);
  if (n != 2) return 0;
  return static_cast<size_t>(resident) * static_cast<size_t>(::sysconf(_SC_PAGESIZE)) / 1024;
}

void ReleaseFreeMemory() { ::malloc_trim(0); }

IdleTrim::IdleTrim(EventLoop& loop, std::chrono::milliseconds delay,
                   std::function<int64_t()> open_now, std::function<void()> wake,
                   std::function<void(size_t, size_t)> released)
    : delay_(delay),
      open_now_(std::move(open_now)),
      wake_(std::move(wake)),
      released_(std::move(released)),
      timer_(loop, [this] { Fire(); }) {}

void IdleTrim::Opened(int64_t open) {
  int64_t peak = peak_.load(std::memory_order_relaxed);
  while (open > peak && !peak_.compare_exchange_weak(peak, open, std::memory_order_relaxed)) {
  }
}

void IdleTrim::Closed(int64_t open) {
  if (!Low(open, peak_.load(std::memory_order_relaxed))) return;
  if (asked_.exchange(true, std::memory_order_acq_rel)) return;  // one pending at a time
  wake_();
}

void IdleTrim::OnWake() {
  if (asked_.load(std::memory_order_acquire) && !timer_.pending()) timer_.Start(delay_);
}

void IdleTrim::Fire() {
  const int64_t open = open_now_();
  if (Low(open, peak_.load(std::memory_order_relaxed))) {
    const size_t before = ResidentKib();
    ReleaseFreeMemory();
    released_(before, ResidentKib());
    peak_.store(open, std::memory_order_relaxed);
  }
  asked_.store(false, std::memory_order_release);
}

}  // namespace core::daemon
