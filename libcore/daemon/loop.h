#pragma once

// The run loop: one libevent event_base, owned, plus RAII watchers (timers, fds, signals) whose
// callbacks are std::function. Watchers are pinned (not movable): libevent keeps `this`.
// Trampolines are noexcept and catch: nothing unwinds through C (STYLE.md §3).

#include <chrono>
#include <functional>

#include "libcore/base/c_handle.h"
#include "libcore/base/result.h"

namespace core::daemon {

class EventLoop {
 public:
  static Result<EventLoop> Create();
  EventLoop(EventLoop&&) = default;
  EventLoop& operator=(EventLoop&&) = default;

  event_base* base() const { return base_.get(); }
  // Runs until Break() or until nothing is left to watch.
  Status Run();
  void Break();

 private:
  explicit EventLoop(EventBasePtr base) : base_(std::move(base)) {}
  EventBasePtr base_;
};

class Timer {
 public:
  Timer(EventLoop& loop, std::function<void()> callback);
  Timer(const Timer&) = delete;
  Timer& operator=(const Timer&) = delete;

  // Fires once after `delay`, or every `delay` when `repeat`.
  void Start(std::chrono::milliseconds delay, bool repeat = false);
  void Stop();
  bool pending() const;

 private:
  static void Trampoline(evutil_socket_t, short, void* self) noexcept;
  std::function<void()> callback_;
  EventPtr event_;
};

// Watches a file descriptor (not owned) for reading and/or writing.
class IoWatch {
 public:
  // `what` is EV_READ and/or EV_WRITE; the callback gets the ready flags (EV_TIMEOUT on timeout).
  IoWatch(EventLoop& loop, int fd, short what, bool persist, std::function<void(short)> callback);
  IoWatch(const IoWatch&) = delete;
  IoWatch& operator=(const IoWatch&) = delete;

  void Start();
  // With a timeout: the callback gets EV_TIMEOUT if the fd stays idle that long.
  void Start(std::chrono::milliseconds timeout);
  void Stop();

 private:
  static void Trampoline(evutil_socket_t, short what, void* self) noexcept;
  std::function<void(short)> callback_;
  EventPtr event_;
};

class SignalWatch {
 public:
  SignalWatch(EventLoop& loop, int signo, std::function<void()> callback);
  SignalWatch(const SignalWatch&) = delete;
  SignalWatch& operator=(const SignalWatch&) = delete;

 private:
  static void Trampoline(evutil_socket_t, short, void* self) noexcept;
  std::function<void()> callback_;
  EventPtr event_;
};

// Seconds on the monotonic clock, for timestamps in daemon state.
double MonotonicSeconds();

}  // namespace core::daemon
