#pragma once

// The modes that serve one connection and then end: oneshot (the first accepted connection),
// stdio (fds 0/1) and a connected socket inherited from socket activation (Accept=yes). The
// connection is served on a thread of its own, so the loop thread stays free for signals; when
// it ends, the loop hears of it (`on_end`) and the daemon exits.

#include <chrono>
#include <condition_variable>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>

#include "libcore/base/result.h"
#include "libcore/base/unique_fd.h"
#include "libcore/daemon/loop.h"
#include "libcore/transport/stream.h"

namespace core::server {

class SingleConnection {
 public:
  struct Hooks {
    // On the connection's thread: makes its stream (a TLS handshake may wait on the peer); null
    // when the connection ended there (the hook reported it).
    std::function<std::unique_ptr<transport::Stream>()> open;
    // On the connection's thread: serves the stream until the connection ends.
    std::function<void(transport::Stream& stream)> serve;
    // On the connection's thread: `open` or `serve` threw (the connection is over). May be empty.
    std::function<void(const std::exception& e)> on_exception;
    // On the connection's thread, once the stream is closed (however it ended).
    std::function<void()> closed;
    // Loop thread, after `closed`: the connection is over. Not called after Shutdown().
    std::function<void()> on_end;
  };
  struct Options {
    // Runs first on the connection's thread (a signal mask...).
    std::function<void()> on_thread_start;
  };

  // `loop` must outlive this object.
  SingleConnection(daemon::EventLoop& loop, Hooks hooks, Options options);
  SingleConnection(const SingleConnection&) = delete;
  SingleConnection& operator=(const SingleConnection&) = delete;
  // Joins the connection's thread: it must have ended (see Wait; a caller that cannot wait exits
  // the process instead).
  ~SingleConnection();

  // Starts the connection's thread. `raw_fd` (borrowed; -1 when there is none to shut down) is
  // the socket the stream will own: Shutdown() shuts it down while the connection is served.
  Status Start(int raw_fd);
  // Ends the connection (its socket is shut down unless it is already closing); `on_end` is not
  // called afterwards.
  void Shutdown();
  // Waits until the connection ended or `deadline` passed; true when it ended (or never started).
  bool Wait(std::chrono::steady_clock::time_point deadline);

 private:
  void Run();
  void OnWake();

  daemon::EventLoop& loop_;
  const Hooks hooks_;
  const Options options_;
  UniqueFd wake_;  // an eventfd: the connection ended
  std::unique_ptr<daemon::IoWatch> wake_watch_;
  std::thread thread_;

  std::mutex mu_;
  std::condition_variable cv_;
  int raw_fd_ = -1;        // guarded by mu_: for shutdown(), valid until `closing_`
  bool started_ = false;   // guarded by mu_
  bool closing_ = false;   // guarded by mu_: the socket is closed or about to be
  bool done_ = false;      // guarded by mu_
  bool stopping_ = false;  // guarded by mu_
};

}  // namespace core::server
