#include "libcore/server/threaded.h"

#include <cerrno>
#include <cstdint>
#include <limits>
#include <string>
#include <system_error>

#include <sys/epoll.h>
#include <sys/eventfd.h>

namespace core::server {
namespace {

constexpr uint64_t kStopEvent = std::numeric_limits<uint64_t>::max();

}  // namespace

ThreadedAcceptor::ThreadedAcceptor(std::vector<int> listeners, Handler handler, Options options)
    : listeners_(std::move(listeners)),
      handler_(std::move(handler)),
      options_(std::move(options)),
      stop_fd_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {}

ThreadedAcceptor::~ThreadedAcceptor() {
  Stop();
  std::list<Worker> all;
  {
    std::lock_guard<std::mutex> lock(mu_);
    all.splice(all.end(), workers_);
  }
  for (Worker& w : all) {
    if (w.thread.joinable()) w.thread.join();
  }
}

Status ThreadedAcceptor::Start() {
  if (!stop_fd_) return Fail(Error::Io("eventfd: " + ErrnoText(errno)));
  epoll_ = UniqueFd(::epoll_create1(EPOLL_CLOEXEC));
  if (!epoll_) return Fail(Error::Io("epoll_create1: " + ErrnoText(errno)));
  for (size_t i = 0; i < listeners_.size(); ++i) {
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLONESHOT;
    ev.data.u64 = i;
    if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, listeners_[i], &ev) != 0) {
      return Fail(Error::Io("epoll_ctl on a listener: " + ErrnoText(errno)));
    }
  }
  epoll_event stop{};
  stop.events = EPOLLIN;  // level-triggered: wakes every waiting thread, one after the other
  stop.data.u64 = kStopEvent;
  if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, stop_fd_.get(), &stop) != 0) {
    return Fail(Error::Io("epoll_ctl on the stop event: " + ErrnoText(errno)));
  }
  std::lock_guard<std::mutex> lock(mu_);
  std::list<Worker> exited;  // none yet
  return SpawnLocked(exited);
}

void ThreadedAcceptor::Stop() {
  std::unique_lock<std::mutex> lock(mu_);
  if (!stopping_) {
    stopping_ = true;
    const uint64_t one = 1;
    (void)!::write(stop_fd_.get(), &one, sizeof one);
    cv_.notify_all();  // threads backing off after an accept error
  }
  // The waiting threads leave at once; none accepts afterwards (they check stopping_ after
  // every wait and every accept, under mu_).
  cv_.wait(lock, [this] { return idle_ == 0; });
}

size_t ThreadedAcceptor::idle() const {
  std::lock_guard<std::mutex> lock(mu_);
  return idle_;
}

size_t ThreadedAcceptor::threads_created() const {
  std::lock_guard<std::mutex> lock(mu_);
  return created_;
}

Status ThreadedAcceptor::SpawnLocked(std::list<Worker>& exited) {
  JoinExitedLocked(exited);
  Worker& w = workers_.emplace_back();
  try {
    w.thread = std::thread([this, &w] { Loop(&w); });
  } catch (const std::system_error& e) {  // EAGAIN: too many threads
    workers_.pop_back();
    return Fail(Error::Io(std::string("cannot start a thread: ") + e.what()));
  }
  ++idle_;
  ++created_;
  return {};
}

void ThreadedAcceptor::JoinExitedLocked(std::list<Worker>& out) {
  if (exited_ == 0) return;
  for (auto it = workers_.begin(); it != workers_.end();) {
    auto next = std::next(it);
    if (it->exited) out.splice(out.end(), workers_, it);
    it = next;
  }
  exited_ = 0;
}

void ThreadedAcceptor::Loop(Worker* w) {
  if (options_.on_thread_start) options_.on_thread_start();
  std::unique_lock<std::mutex> lock(mu_);
  while (!stopping_ && AcceptOne(lock)) {
  }
  // Leaves idle (AcceptOne returns false only for a thread that counts as idle).
  --idle_;
  cv_.notify_all();
  w->exited = true;
  ++exited_;
}

void ThreadedAcceptor::Rearm(size_t listener) {
  epoll_event ev{};
  ev.events = EPOLLIN | EPOLLONESHOT;
  ev.data.u64 = listener;
  (void)::epoll_ctl(epoll_.get(), EPOLL_CTL_MOD, listeners_[listener], &ev);
}

bool ThreadedAcceptor::AcceptOne(std::unique_lock<std::mutex>& lock) {
  const auto timeout = static_cast<int>(options_.idle_timeout.count());
  lock.unlock();
  // One event at a time: a listener's event is one-shot, and only its taker re-arms it.
  epoll_event events[1];
  const int n = ::epoll_wait(epoll_.get(), events, 1, timeout);
  const int wait_err = errno;
  lock.lock();
  if (stopping_) return false;
  if (n < 0) {
    if (wait_err == EINTR) return true;
    if (options_.on_accept_error) {
      options_.on_accept_error(0, Error::Io("epoll_wait: " + ErrnoText(wait_err)));
    }
    cv_.wait_for(lock, options_.error_backoff, [this] { return stopping_; });
    return true;
  }
  if (n == 0) return idle_ <= 1;  // idle for idle_timeout: exit, unless it is the last one
  for (int e = 0; e < n; ++e) {
    const uint64_t which = events[e].data.u64;
    if (which == kStopEvent) return false;
    const auto listener = static_cast<size_t>(which);
    lock.unlock();
    sockaddr_storage peer{};
    socklen_t len = sizeof peer;
    const int fd =
        ::accept4(listeners_[listener], reinterpret_cast<sockaddr*>(&peer), &len, SOCK_CLOEXEC);
    const int err = errno;
    UniqueFd conn(fd);
    const bool failed = !conn && !TransientAcceptError(err);
    if (!failed) Rearm(listener);  // the next connection wakes another waiting thread
    lock.lock();
    if (stopping_) return false;  // closes a connection accepted as Stop() began
    if (!conn) {
      if (!failed) continue;  // the peer gave up
      if (options_.on_accept_error) {
        options_.on_accept_error(listener, Error::Io("accept: " + ErrnoText(err)));
      }
      cv_.wait_for(lock, options_.error_backoff, [this] { return stopping_; });
      lock.unlock();
      Rearm(listener);
      lock.lock();
      return true;
    }
    // This thread serves; the last idle one starts another to wait for the next connection.
    --idle_;
    std::list<Worker> exited;
    if (idle_ == 0) {
      if (auto st = SpawnLocked(exited); !st && options_.on_spawn_error) {
        options_.on_spawn_error(st.error());
      }
    }
    lock.unlock();
    for (Worker& w : exited) w.thread.join();  // they have left Loop(): joins at once
    exited.clear();
    try {
      handler_(std::move(conn), peer, len, listener);
    } catch (...) {  // handlers catch at their own top level; nothing may unwind out of a thread
    }
    lock.lock();
    if (stopping_ || idle_ >= options_.max_idle) {
      ++idle_;  // Loop() takes it off again
      return false;
    }
    ++idle_;
    return true;
  }
  return true;
}

}  // namespace core::server
