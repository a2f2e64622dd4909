#pragma once

// Test-only helper (never linked into the daemons): polls a condition that another thread makes
// true.

#include <chrono>
#include <thread>

namespace core::testing {

// Waits until `pred()` holds, checking every millisecond; false when `timeout` passed first.
template <typename Pred>
bool Eventually(Pred pred, std::chrono::milliseconds timeout = std::chrono::seconds(5)) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!pred()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return true;
}

}  // namespace core::testing
