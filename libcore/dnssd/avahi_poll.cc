#include "libcore/dnssd/avahi_poll.h"

#include <event2/event.h>
#include <sys/time.h>

// Avahi declares these opaque; the poll implementation defines them (global namespace).
struct AvahiWatch {
  event_base* base = nullptr;
  event* ev = nullptr;
  int fd = -1;
  AvahiWatchEvent wanted = static_cast<AvahiWatchEvent>(0);
  AvahiWatchEvent fired = static_cast<AvahiWatchEvent>(0);
  AvahiWatchCallback callback = nullptr;
  void* userdata = nullptr;
};

struct AvahiTimeout {
  event* ev = nullptr;
  AvahiTimeoutCallback callback = nullptr;
  void* userdata = nullptr;
};

namespace core::dnssd {

namespace {

event_base* Base(const AvahiPoll* api) { return static_cast<event_base*>(api->userdata); }

short ToLibevent(AvahiWatchEvent e) {
  short what = EV_PERSIST;
  if ((e & AVAHI_WATCH_IN) != 0) what |= EV_READ;
  if ((e & AVAHI_WATCH_OUT) != 0) what |= EV_WRITE;
  return what;
}

void WatchFired(evutil_socket_t, short what, void* arg) noexcept {
  auto* w = static_cast<AvahiWatch*>(arg);
  int fired = 0;
  if ((what & EV_READ) != 0) fired |= AVAHI_WATCH_IN;
  if ((what & EV_WRITE) != 0) fired |= AVAHI_WATCH_OUT;
  w->fired = static_cast<AvahiWatchEvent>(fired);
  // The callback may free the watch: nothing touches `w` afterwards.
  w->callback(w, w->fd, w->fired, w->userdata);
}

void ArmWatch(AvahiWatch* w) {
  if (w->ev != nullptr) event_free(w->ev);
  w->ev = nullptr;
  if ((w->wanted & (AVAHI_WATCH_IN | AVAHI_WATCH_OUT)) == 0) return;
  w->ev = event_new(w->base, w->fd, ToLibevent(w->wanted), &WatchFired, w);
  if (w->ev != nullptr) event_add(w->ev, nullptr);
}

AvahiWatch* WatchNew(const AvahiPoll* api, int fd, AvahiWatchEvent events,
                     AvahiWatchCallback callback, void* userdata) {
  auto* w = new AvahiWatch;  // NOLINT(cppcoreguidelines-owning-memory): freed by WatchFree
  w->base = Base(api);
  w->fd = fd;
  w->wanted = events;
  w->callback = callback;
  w->userdata = userdata;
  ArmWatch(w);
  return w;
}

void WatchUpdate(AvahiWatch* w, AvahiWatchEvent events) {
  if (events == w->wanted) return;
  w->wanted = events;
  ArmWatch(w);
}

AvahiWatchEvent WatchGetEvents(AvahiWatch* w) { return w->fired; }

void WatchFree(AvahiWatch* w) {
  if (w->ev != nullptr) event_free(w->ev);
  delete w;  // NOLINT(cppcoreguidelines-owning-memory)
}

void TimeoutFired(evutil_socket_t, short, void* arg) noexcept {
  auto* t = static_cast<AvahiTimeout*>(arg);
  t->callback(t, t->userdata);  // may free or update `t`
}

void ArmTimeout(AvahiTimeout* t, const timeval* tv) {
  event_del(t->ev);
  if (tv == nullptr) return;  // disabled
  timeval now{};
  gettimeofday(&now, nullptr);
  timeval delay{};
  if (timercmp(tv, &now, >)) timersub(tv, &now, &delay);
  event_add(t->ev, &delay);
}

AvahiTimeout* TimeoutNew(const AvahiPoll* api, const timeval* tv, AvahiTimeoutCallback callback,
                         void* userdata) {
  auto* t = new AvahiTimeout;  // NOLINT(cppcoreguidelines-owning-memory): freed by TimeoutFree
  t->callback = callback;
  t->userdata = userdata;
  t->ev = evtimer_new(Base(api), &TimeoutFired, t);
  if (t->ev == nullptr) {
    delete t;  // NOLINT(cppcoreguidelines-owning-memory)
    return nullptr;
  }
  ArmTimeout(t, tv);
  return t;
}

void TimeoutUpdate(AvahiTimeout* t, const timeval* tv) { ArmTimeout(t, tv); }

void TimeoutFree(AvahiTimeout* t) {
  event_free(t->ev);
  delete t;  // NOLINT(cppcoreguidelines-owning-memory)
}

}  // namespace

AvahiLoopPoll::AvahiLoopPoll(daemon::EventLoop& loop) {
  api_.userdata = loop.base();
  api_.watch_new = &WatchNew;
  api_.watch_update = &WatchUpdate;
  api_.watch_get_events = &WatchGetEvents;
  api_.watch_free = &WatchFree;
  api_.timeout_new = &TimeoutNew;
  api_.timeout_update = &TimeoutUpdate;
  api_.timeout_free = &TimeoutFree;
}

}  // namespace core::dnssd
