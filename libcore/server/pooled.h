#pragma once

// Threadpool mode: the loop thread owns every client socket and hands a readable one to a fixed
// pool of workers, which serve what has arrived and give it back; idle clients hold no thread.
//
// Per connection: Add() (loop thread) sets it up off the loop through the `open` hook (on a
// worker, or on a thread of its own when setup may wait on the peer: a TLS handshake would
// otherwise stall every worker), then the loop watches the socket. When it is readable, or when
// a limit runs out, a worker calls the session's ServeAvailable() and reports back to the loop
// through an eventfd: idle again (the loop watches it again) or ended (finished, destroyed and
// dropped). What a connection speaks, and what it logs, is the session's business: this file
// knows no protocol.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <utility>
#include <vector>

#include "libcore/base/result.h"
#include "libcore/base/unique_fd.h"
#include "libcore/daemon/loop.h"
#include "libcore/server/thread_pool.h"

namespace core::server {

class PooledServer {
 public:
  // One connection, as the `open` hook made it. ServeAvailable() and Finish() run on a worker,
  // one call at a time; Shutdown() may come from any thread, concurrently with them.
  class Session {
   public:
    virtual ~Session() = default;
    // Serves what has arrived without waiting for more: true while the connection stays open
    // (it waits for input again), false once it ended.
    virtual bool ServeAvailable() = 0;
    // The connection is over (ServeAvailable() returned false, or the server is stopping):
    // reports and releases what it holds. The session is destroyed next.
    virtual void Finish() = 0;
    // Ends the connection: the next ServeAvailable() returns false.
    virtual void Shutdown() = 0;
    // Loop thread, between two calls of ServeAvailable(): the time left before the deadline of
    // a request that has started to arrive; the loop wakes a worker then.
    virtual std::optional<std::chrono::milliseconds> FrameTimeLeft() const { return std::nullopt; }
  };

  struct Hooks {
    // Off the loop: makes the session for the socket `fd` (blocking, close-on-exec); null when the
    // connection ended during setup (the hook reported it; `closed` is not called then).
    std::function<std::unique_ptr<Session>(UniqueFd fd, uint64_t id)> open;
    // On a worker, after the session was finished and destroyed.
    std::function<void(uint64_t id)> closed;
    // The idle limit now (zero: none), asked each time a connection waits for input.
    std::function<std::chrono::milliseconds()> idle_timeout;
    // Loop thread: connection `id` sent nothing for `idle_timeout`; it is shut down next. May be
    // empty.
    std::function<void(uint64_t id)> on_idle_timeout;
  };

  struct Options {
    size_t threads = 4;
    // `open` may wait on the peer (a TLS handshake): it runs on a thread of its own, not on a
    // worker, and the connection joins the pool once it is set up.
    bool setup_thread = false;
    // Runs once on each worker and setup thread (a signal mask...).
    std::function<void()> on_thread_start;
  };

  // `loop` must outlive the server; the workers start at once.
  PooledServer(daemon::EventLoop& loop, Hooks hooks, Options options);
  PooledServer(const PooledServer&) = delete;
  PooledServer& operator=(const PooledServer&) = delete;
  // Joins the workers (they run what is queued) and destroys the sessions left: call Stop()
  // first, and only when it returned 0.
  ~PooledServer();

  // Starts watching for the workers' reports.
  Status Start();
  // Loop thread: serves the accepted socket `fd` as connection `id`.
  void Add(UniqueFd fd, uint64_t id);
  // Loop thread: ends every connection (a busy one when its current step returns); takes no
  // more steps afterwards.
  void Shutdown();
  // Waits until `deadline` for the workers and the setup threads to finish. Returns how many
  // are still running (user code that does not return).
  size_t Stop(std::chrono::steady_clock::time_point deadline);

  // Loop thread: connections added and not yet ended.
  size_t size() const { return conns_.size(); }

 private:
  struct Conn;
  void Arm(const std::shared_ptr<Conn>& c);
  void Step(const std::shared_ptr<Conn>& c);
  void Post(uint64_t id, bool ended);
  void OnWake();

  daemon::EventLoop& loop_;
  const Hooks hooks_;
  const Options options_;
  std::atomic<bool> stopping_{false};  // workers read it
  UniqueFd wake_;                      // an eventfd: workers' reports are waiting
  std::unique_ptr<daemon::IoWatch> wake_watch_;
  std::map<uint64_t, std::shared_ptr<Conn>> conns_;  // loop thread only

  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::pair<uint64_t, bool>> events_;  // guarded by mu_: (id, ended)
  int setups_ = 0;                                 // guarded by mu_: setup threads still running
  // Declared last: destroyed (joined) first, while everything its tasks touch is alive.
  WorkerPool pool_;
};

}  // namespace core::server
