#pragma once

// Threaded mode's accept path: a thread per live connection, and the threads accept for
// themselves. Idle threads wait in one shared epoll set on the listeners; a listener is armed
// one-shot (EPOLLONESHOT), so a new connection wakes one waiting thread, not all; it accepts,
// re-arms the listener (the next connection wakes another thread) and serves the connection on
// the spot. A connection costs one wake-up (the acceptor's) rather than two (a loop thread's,
// then a connection thread's), and the acceptor holds two descriptors however many threads wait.
// When the last idle thread takes a connection it starts another, so one is always waiting;
// after its connection a thread waits again, or exits when `max_idle` threads already wait. Idle
// threads beyond the first exit after `idle_timeout` without a connection. Stop() wakes the idle
// threads through an eventfd; threads serving a connection leave when it ends.

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <functional>
#include <list>
#include <mutex>
#include <thread>
#include <vector>

#include <sys/socket.h>

#include "libcore/base/result.h"
#include "libcore/base/unique_fd.h"
#include "libcore/server/accept.h"

namespace core::server {

class ThreadedAcceptor {
 public:
  // Serves one accepted connection on the accepting thread; returns when it is over.
  using Handler = AcceptHandler;

  struct Options {
    size_t max_idle = 32;
    std::chrono::milliseconds idle_timeout{30'000};
    // Runs once on each new thread before it first waits (a signal mask, a name...).
    std::function<void()> on_thread_start;
    // accept() failed with something other than a peer giving up (EMFILE, ENOBUFS...): the
    // thread waits `error_backoff` before it tries again.
    std::function<void(size_t listener, const Error& e)> on_accept_error;
    // No thread could be started to wait for the next connection (EAGAIN): connections wait in
    // the backlog until a thread is free.
    std::function<void(const Error& e)> on_spawn_error;
    std::chrono::milliseconds error_backoff{100};
  };

  // `listeners`: listening sockets, borrowed: they must stay open until Stop() has returned
  // (non-blocking or not; the acceptor only accepts when one is readable).
  ThreadedAcceptor(std::vector<int> listeners, Handler handler, Options options);
  ThreadedAcceptor(const ThreadedAcceptor&) = delete;
  ThreadedAcceptor& operator=(const ThreadedAcceptor&) = delete;
  // Stops, and joins every thread: their connections must have ended (a handler that never
  // returns blocks here; callers that cannot wait exit the process instead).
  ~ThreadedAcceptor();

  // Starts the first waiting thread.
  Status Start();
  // No thread accepts once this returns (the listeners may be closed then); threads serving a
  // connection finish it and exit. Idempotent.
  void Stop();

  // Threads waiting for a connection now, and threads created over the acceptor's life.
  size_t idle() const;
  size_t threads_created() const;

 private:
  struct Worker {
    std::thread thread;
    bool exited = false;  // guarded by mu_
  };
  // mu_ held: starts a waiting thread; moves exited workers to `exited`, for the caller to join
  // after unlocking.
  Status SpawnLocked(std::list<Worker>& exited);
  void Loop(Worker* w);
  // Waits for a connection and serves it; false when the thread should exit.
  bool AcceptOne(std::unique_lock<std::mutex>& lock);
  void Rearm(size_t listener);
  void JoinExitedLocked(std::list<Worker>& out);  // mu_ held: moves exited workers to `out`

  const std::vector<int> listeners_;
  const Handler handler_;
  const Options options_;
  UniqueFd stop_fd_;  // an eventfd, readable once Stop() was called
  UniqueFd epoll_;    // the listeners (one-shot) and stop_fd_, shared by the waiting threads

  mutable std::mutex mu_;
  std::condition_variable cv_;  // Stop() waits here for idle_ to reach 0
  std::list<Worker> workers_;   // guarded by mu_ (elements are pinned: threads hold pointers)
  size_t idle_ = 0;             // guarded by mu_: threads waiting or accepting, not serving
  size_t exited_ = 0;           // guarded by mu_: workers that exited and are not joined
  size_t created_ = 0;          // guarded by mu_
  bool stopping_ = false;       // guarded by mu_
};

}  // namespace core::server
