#pragma once

// Test-only helper (never linked into the daemons): drives a daemon::EventLoop on the test's
// thread, for code that must be called on the loop thread.

#include <chrono>
#include <cstdlib>
#include <utility>

#include <event2/event.h>

#include "libcore/daemon/loop.h"
#include "libcore/testing/eventually.h"

namespace core::testing {

// A new loop; aborts the test binary when libevent cannot make one.
inline daemon::EventLoop NewLoop() {
  auto loop = daemon::EventLoop::Create();
  if (!loop) std::abort();
  return std::move(*loop);
}

// Runs one round of what is ready on `loop` (never more: a descriptor that stays ready, such as a
// listener without a free descriptor to accept into, would keep a draining loop busy forever),
// checks `pred()`, and repeats until it holds; false when `timeout` passed first.
template <typename Pred>
bool RunLoopUntil(daemon::EventLoop& loop, Pred pred,
                  std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
  return Eventually(
      [&] {
        event_base_loop(loop.base(), EVLOOP_ONCE | EVLOOP_NONBLOCK);
        return pred();
      },
      timeout);
}

}  // namespace core::testing
