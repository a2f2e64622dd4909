#pragma once

// Heap memory a daemon no longer uses, given back to the kernel after a load spike.
//
// glibc's malloc gives threads that allocate at the same time arenas of their own (up to 8 per
// CPU on 64-bit) and keeps what is freed in them for reuse. After a spike served by many
// threads (threaded mode: a thread per connection) the daemon keeps close to its peak RSS for
// good, though nothing leaks. ReleaseFreeMemory() is malloc_trim(0): the free pages of every
// arena go back (madvise), not only the top of the main heap. It costs a walk of the free lists,
// so daemons call it when load has dropped, not per request (see IdleTrim).

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>

#include "libcore/daemon/loop.h"

namespace core::daemon {

// This process's resident set size in KiB (/proc/self/statm); 0 when unreadable.
size_t ResidentKib();

// malloc_trim(0).
void ReleaseFreeMemory();

// Releases free memory once load has dropped. Opened(n) and Closed(n) are called (from any
// thread) as connections start and end, with the number then open. When a close leaves none
// open, or at most a quarter of a peak of 16 or more since the last release, the loop makes a
// release `delay` later if the count (asked again then) is still that low. At most one release
// is pending at a time: connections churning one at a time cost an atomic exchange each and a
// release per `delay` at most; steady load never releases.
class IdleTrim {
 public:
  // `wake` asks the loop thread to call OnWake() soon (an eventfd write, for example);
  // `released` gets the RSS in KiB before and after each release, for a log line.
  IdleTrim(EventLoop& loop, std::chrono::milliseconds delay, std::function<int64_t()> open_now,
           std::function<void()> wake, std::function<void(size_t, size_t)> released);
  IdleTrim(const IdleTrim&) = delete;
  IdleTrim& operator=(const IdleTrim&) = delete;

  // Load is low: nothing open, or at most a quarter of a peak of 16 or more.
  static bool Low(int64_t open, int64_t peak) {
    return open == 0 || (peak >= 16 && open * 4 <= peak);
  }
  void Opened(int64_t open);
  void Closed(int64_t open);
  // On the loop thread: starts the delay when a release was asked for.
  void OnWake();

 private:
  void Fire();

  std::chrono::milliseconds delay_;
  std::function<int64_t()> open_now_;
  std::function<void()> wake_;
  std::function<void(size_t, size_t)> released_;
  std::atomic<int64_t> peak_{0};
  std::atomic<bool> asked_{false};  // a release is asked for or pending
  Timer timer_;
};

}  // namespace core::daemon
