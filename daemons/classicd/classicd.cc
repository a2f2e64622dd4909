#include "daemons/classicd/classicd.h"

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <exception>
#include <memory>
#include <string>
#include <system_error>

#include <signal.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "daemons/classicd/log.h"
#include "daemons/classicd/objspace/objspace.h"
#include "libcore/base/unique_fd.h"
#include "libcore/protocol/connection.h"
#include "libcore/transport/listener.h"

namespace classicd {
namespace {

using core::protocol::Connection;

// SIGTERM and SIGINT are blocked in every thread and read from a signalfd by the server loop.
core::Result<core::UniqueFd> BlockStopSignals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  if (const int rc = pthread_sigmask(SIG_BLOCK, &set, nullptr); rc != 0) {
    return core::Fail(core::Error::Io("pthread_sigmask: " +
                                      std::error_code(rc, std::generic_category()).message()));
  }
  core::UniqueFd fd(::signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK));
  if (!fd) {
    return core::Fail(
        core::Error::Io("signalfd: " + std::error_code(errno, std::generic_category()).message()));
  }
  return fd;
}

const char* SignalName(uint32_t sig) {
  switch (sig) {
    case SIGTERM:
      return "SIGTERM";
    case SIGINT:
      return "SIGINT";
    default:
      return "a signal";
  }
}

// One connection, on its own thread: the engine plus a fresh classic object space.
class ConnectionServer {
 public:
  ConnectionServer(objspace::Interpreter& interpreter, std::shared_ptr<spdlog::logger> log)
      : interpreter_(interpreter), log_(std::move(log)) {}

  void Serve(core::transport::Stream& stream, const core::transport::SocketAddress& peer) {
    SetThreadName("Conn-" + std::to_string(++counter_));
    const std::string who = peer.PythonRepr();
    log_->info("welcome {}", who);
    try {  // the connection's top level: nothing below may take the daemon down
      Connection conn(stream);
      auto space = objspace::MakeClassicObjectSpace(interpreter_, conn);
      conn.set_object_space(space.get());
      core::Result<core::protocol::EndReason> end = core::Fail(core::Error::Usage("not served"));
      try {
        end = conn.Serve();
      } catch (const std::exception& e) {
        conn.Shutdown();
        end = core::Fail(core::Error::Protocol(std::string("internal error: ") + e.what()));
      }
      if (end) {
        log_->debug("connection {} ended: {}", who, core::protocol::EndReasonName(*end));
      } else {
        log_->error("connection {} closed: {}", who, end.error().ToString());
      }
      const size_t lent = space->LocalObjectCount();
      space->OnDisconnect();
      log_->debug("connection {}: {} objects lent at disconnect, {} after release", who, lent,
                  space->LocalObjectCount());
    } catch (const std::exception& e) {
      log_->error("connection {} closed: internal error: {}", who, e.what());
    }
    log_->info("goodbye {}", who);
  }

 private:
  objspace::Interpreter& interpreter_;
  std::shared_ptr<spdlog::logger> log_;
  std::atomic<int> counter_{0};
};

}  // namespace

int Run(const Options& options) {
  SetThreadName("MainThread");
  auto signals = BlockStopSignals();

  auto listener = core::transport::TcpListener::Listen(options.host, options.port);
  LogOptions log_options;
  log_options.name =
      "SLAVE/" + std::to_string(listener ? listener->local_address().port() : options.port);
  log_options.quiet = options.quiet;
  log_options.logfile = options.logfile;
  std::string log_error;
  auto log = MakeLogger(log_options, &log_error);
  if (!log_error.empty()) log->error("cannot open log file: {}", log_error);
  if (!signals) {
    log->critical("{}", signals.error().ToString());
    return 1;
  }
  if (!listener) {
    log->critical("cannot listen: {}", listener.error().ToString());
    return 1;
  }
  const core::transport::SocketAddress local = listener->local_address();

  auto interpreter = objspace::Interpreter::Start(objspace::InterpreterOptions{});
  if (!interpreter) {
    log->critical("cannot start the Python interpreter: {}", interpreter.error().ToString());
    return 1;
  }

  ConnectionServer connections(**interpreter, log);
  core::server::ServerHooks hooks;
  hooks.on_accepted = [&log](const core::transport::SocketAddress& peer, int fd) {
    log->info("accepted {} with fd {}", peer.PythonRepr(), fd);
  };
  hooks.on_accept_error = [&log](const core::Error& e) { log->error("{}", e.ToString()); };
  core::server::ServerOptions server_options;
  server_options.stop_fd = signals->get();
  auto server = core::server::MakeServer(
      options.mode, std::move(*listener),
      [&connections](core::transport::Stream& s, const core::transport::SocketAddress& peer) {
        connections.Serve(s, peer);
      },
      hooks, server_options);
  if (!server) {
    log->critical("{}", server.error().ToString());
    return 1;
  }
  log->info("server started on [{}]:{}", local.host(), local.port());
  auto stuck = (*server)->Run();

  signalfd_siginfo info{};
  if (::read(signals->get(), &info, sizeof(info)) == static_cast<ssize_t>(sizeof(info))) {
    log->info("{} received: stopping", SignalName(info.ssi_signo));
  }
  if (!stuck) {
    log->critical("server failed: {}", stuck.error().ToString());
    return 1;
  }
  if (*stuck > 0) {
    // Threads still running user code cannot be joined, and the interpreter cannot be finalised
    // under them: leave without unwinding.
    log->warn("{} connections still running user code; exiting without waiting", *stuck);
    log->flush();
    std::_Exit(0);
  }
  server->reset();
  interpreter->reset();
  log->info("server has terminated");
  return 0;
}

}  // namespace classicd
