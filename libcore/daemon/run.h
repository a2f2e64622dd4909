#pragma once

// The daemon runtime every daemon's main() hands over to (STYLE.md §6): logging, the loop,
// inherited sockets, the daemon's Service, signals, and sd_notify, in construction order; the
// reverse on shutdown.
//   SIGTERM/SIGINT: STOPPING=1, Service::Shutdown(), leave the loop, exit 0.
//   SIGHUP: reopen the log file, Service::Reload().
//   SIGUSR1: one line "status: <Service::StatusText()>" in the log.
//   SIGUSR2: reopen the log file only (logrotate's postrotate; the configuration is not re-read).
//   A start that fails logs its reason and, when the log does not reach stderr (--log file, a
//   journal that is not stderr), writes it to stderr too, as sshd does.
//   READY=1 with STATUS=<Service::StatusText()> once the service is built (listeners bound);
//   STATUS= again whenever the text changes (checked every second).
//   WATCHDOG=1 every WatchdogSec/2 when the service manager asks for it (WATCHDOG_USEC).
//   A service that has nothing left to do (one connection served) calls Context::finish().

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "libcore/base/result.h"
#include "libcore/daemon/loop.h"
#include "libcore/daemon/sockets.h"
#include "libcore/log/log.h"

namespace core::daemon {

class Service {
 public:
  virtual ~Service() = default;
  virtual std::string StatusText() const = 0;
  virtual void Reload() {}
  // Called once on SIGTERM/SIGINT, before the loop exits: stop accepting, say goodbye.
  virtual void Shutdown() {}
  // The logger name for the runtime's own messages once the service runs, when it differs from
  // RunOptions::name (e.g. "SLAVE/41234" after binding port 0); empty keeps RunOptions::name.
  virtual std::string LoggerName() const { return {}; }
};

struct Context {
  EventLoop& loop;
  log::Logging& logging;
  // Sockets from socket activation; the factory moves out the ones it adopts.
  std::vector<InheritedSocket>& inherited;
  // Stops the daemon as a signal would (STOPPING=1, Service::Shutdown(), exit 0). Set by Run();
  // call it from the loop thread.
  std::function<void(const char* why)> finish;
};

using ServiceFactory = std::function<Result<std::unique_ptr<Service>>(Context&)>;

struct RunOptions {
  std::string name;  // logger name for the runtime's own messages
  log::Options log;
  // The warning SIGINT logs (the reference's line); empty: "SIGINT: stopping" at info.
  std::string interrupt_message;
  // False where fd 2 is not the operator's (stdio mode: the log file or /dev/null).
  bool start_failure_to_stderr = true;
};

// Returns the process exit status: 0 after a signal-initiated stop, 1 when startup fails.
int Run(const RunOptions& options, const ServiceFactory& factory);

}  // namespace core::daemon
