#pragma once

// How a daemon serves its listening socket (STYLE.md §1: one file per mode behind this header).
// A server accepts connections and hands each stream to a handler; it knows nothing of the
// protocol spoken on it.

#include <functional>
#include <memory>
#include <string_view>

#include "libcore/base/result.h"
#include "libcore/transport/address.h"
#include "libcore/transport/listener.h"
#include "libcore/transport/stream.h"

namespace core::server {

// The reference's modes (PROTOCOL.md §11). Only kThreaded is implemented so far; the others get
// their own file (thread_pool.cc, forking.cc, ...) behind MakeServer().
enum class Mode { kThreaded, kForking, kOneShot, kStdio };

// Case-insensitive, as rpyc_classic's -m: "threaded", "forking", "oneshot", "stdio".
Result<Mode> ParseMode(std::string_view name);
const char* ModeName(Mode m);

// Serves one connection until it ends, on a thread the server chose. The stream is shut down
// (not closed) by the server to stop it early; it is closed after the handler returns.
using ConnectionHandler =
    std::function<void(transport::Stream& stream, const transport::SocketAddress& peer)>;

struct ServerHooks {
  // On the accepting thread, for each accepted connection (the reference logs "accepted").
  std::function<void(const transport::SocketAddress& peer, int fd)> on_accepted;
  // On the accepting thread, for an accept() failure that does not stop the server (EMFILE...).
  std::function<void(const Error& error)> on_accept_error;
};

struct ServerOptions {
  // After Stop(), how long to wait for connections to end once their streams are shut down. A
  // connection still running user code after that cannot be joined: Run() reports it.
  int stop_grace_ms = 5000;
  // A descriptor that stops the server when it becomes readable (a signalfd), or -1.
  int stop_fd = -1;
};

class Server {
 public:
  Server() = default;
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;
  virtual ~Server() = default;

  // Accepts and serves until Stop() is called or the stop descriptor becomes readable, then
  // shuts down every connection and waits for it. Returns the number of connections that did
  // not end within the grace period (their threads are still running: the caller must exit the
  // process without returning from main, e.g. with std::_Exit).
  virtual Result<size_t> Run() = 0;

  // Any thread, any number of times.
  virtual void Stop() = 0;

  virtual const transport::SocketAddress& local_address() const = 0;
};

Result<std::unique_ptr<Server>> MakeServer(Mode mode, transport::TcpListener listener,
                                           ConnectionHandler handler, ServerHooks hooks = {},
                                           ServerOptions options = {});

}  // namespace core::server
