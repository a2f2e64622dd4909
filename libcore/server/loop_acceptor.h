#pragma once

// Accepting on the loop thread, for the modes whose connections the loop hands out: threadpool
// (to the workers), forking (to a child) and oneshot (to its one connection thread). Each
// listener is watched on the loop; when it is readable, up to `max_per_wake` connections are
// accepted in a row (the other listeners and events get their turn after that) and each goes to
// the handler. Single-threaded: everything on the loop thread.

#include <cstddef>
#include <functional>
#include <memory>
#include <vector>

#include <sys/socket.h>

#include "libcore/base/result.h"
#include "libcore/base/unique_fd.h"
#include "libcore/daemon/loop.h"
#include "libcore/server/accept.h"

namespace core::server {

class LoopAcceptor {
 public:
  // May call Stop() (oneshot: the first connection only).
  using Handler = AcceptHandler;

  struct Options {
    size_t max_per_wake = 64;
    // accept() failed with something other than a peer giving up or a signal (EMFILE...); the
    // error's message is the errno text. The listener is tried again at its next readiness.
    std::function<void(size_t listener, const Error& e)> on_accept_error;
  };

  // `listeners`: listening, non-blocking sockets, borrowed: they must stay open until Stop().
  LoopAcceptor(daemon::EventLoop& loop, std::vector<int> listeners, Handler handler,
               Options options);
  LoopAcceptor(const LoopAcceptor&) = delete;
  LoopAcceptor& operator=(const LoopAcceptor&) = delete;

  void Start();
  // Nothing is accepted afterwards (the listeners may be closed then). Idempotent.
  void Stop();

 private:
  void OnAcceptable(size_t listener);

  const std::vector<int> listeners_;
  const Handler handler_;
  const Options options_;
  std::vector<std::unique_ptr<daemon::IoWatch>> watches_;
  bool stopped_ = false;
};

}  // namespace core::server
