#include "libcore/daemon/loop.h"

#include <cstdio>
#include <exception>

#include <time.h>

namespace core::daemon {
namespace {

timeval ToTimeval(std::chrono::milliseconds d) {
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(d.count() / 1000);
  tv.tv_usec = static_cast<suseconds_t>((d.count() % 1000) * 1000);
  return tv;
}

template <typename F>
void CallGuarded(F&& f) noexcept {
  try {
    f();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ERROR:core:uncaught exception in event callback: %s\n", e.what());
  } catch (...) {
    std::fprintf(stderr, "ERROR:core:uncaught exception in event callback\n");
  }
}

}  // namespace

Result<EventLoop> EventLoop::Create() {
  EventBasePtr base(event_base_new());
  if (!base) return Fail(Error::Io("event_base_new failed"));
  return EventLoop(std::move(base));
}

Status EventLoop::Run() {
  if (event_base_dispatch(base_.get()) < 0) return Fail(Error::Io("event_base_dispatch failed"));
  return {};
}

void EventLoop::Break() { event_base_loopbreak(base_.get()); }

Timer::Timer(EventLoop& loop, std::function<void()> callback)
    : callback_(std::move(callback)), event_(event_new(loop.base(), -1, 0, &Trampoline, this)) {}

void Timer::Start(std::chrono::milliseconds delay, bool repeat) {
  event_del(event_.get());
  event_assign(event_.get(), event_get_base(event_.get()), -1, repeat ? EV_PERSIST : 0, &Trampoline,
               this);
  const timeval tv = ToTimeval(delay);
  event_add(event_.get(), &tv);
}

void Timer::Stop() { event_del(event_.get()); }

bool Timer::pending() const { return event_pending(event_.get(), EV_TIMEOUT, nullptr) != 0; }

void Timer::Trampoline(evutil_socket_t, short, void* self) noexcept {
  CallGuarded([self] { static_cast<Timer*>(self)->callback_(); });
}

IoWatch::IoWatch(EventLoop& loop, int fd, short what, bool persist,
                 std::function<void(short)> callback)
    : callback_(std::move(callback)),
      event_(event_new(loop.base(), fd, static_cast<short>(what | (persist ? EV_PERSIST : 0)),
                       &Trampoline, this)) {}

void IoWatch::Start() { event_add(event_.get(), nullptr); }

void IoWatch::Start(std::chrono::milliseconds timeout) {
  const timeval tv = ToTimeval(timeout);
  event_add(event_.get(), &tv);
}

void IoWatch::Stop() { event_del(event_.get()); }

void IoWatch::Trampoline(evutil_socket_t, short what, void* self) noexcept {
  CallGuarded([self, what] { static_cast<IoWatch*>(self)->callback_(what); });
}

SignalWatch::SignalWatch(EventLoop& loop, int signo, std::function<void()> callback)
    : callback_(std::move(callback)), event_(evsignal_new(loop.base(), signo, &Trampoline, this)) {
  event_add(event_.get(), nullptr);
}

void SignalWatch::Trampoline(evutil_socket_t, short, void* self) noexcept {
  CallGuarded([self] { static_cast<SignalWatch*>(self)->callback_(); });
}

double MonotonicSeconds() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

}  // namespace core::daemon
