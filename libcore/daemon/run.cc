#include "libcore/daemon/run.h"

#include <algorithm>
#include <cstdio>
#include <string_view>

#include <signal.h>

#include "libcore/daemon/notify.h"

namespace core::daemon {

int Run(const RunOptions& options, const ServiceFactory& factory) {
  auto logging = log::Logging::Create(options.log);
  if (!logging) {
    std::fprintf(stderr, "%s: %s\n", options.name.c_str(), logging.error().message().c_str());
    return 1;
  }
  log::Logger log = (*logging)->Get(options.name);
  // A start that fails says why where the operator looks: the log, and stderr when the log
  // does not reach it.
  auto failed = [&](const Error& error) {
    log.Error("{}", error.message());
    if (options.start_failure_to_stderr && !(*logging)->reaches_stderr()) {
      std::fprintf(stderr, "%s: %s\n", options.log.identifier.c_str(), error.message().c_str());
    }
  };
  auto loop = EventLoop::Create();
  if (!loop) {
    failed(loop.error());
    return 1;
  }
  auto inherited = TakeInheritedSockets();
  if (!inherited) {
    failed(inherited.error());
    return 1;
  }
  ::signal(SIGPIPE, SIG_IGN);

  bool stopping = false;
  std::unique_ptr<Service>* running = nullptr;
  auto stop = [&](const char* why) {
    if (stopping) return;
    stopping = true;
    if (std::string_view(why) == "SIGINT" && !options.interrupt_message.empty()) {
      log.Warn("{}", options.interrupt_message);
    } else {
      log.Info("{}: stopping", why);
    }
    NotifyStopping();
    if (running != nullptr) (*running)->Shutdown();
    loop->Break();
  };
  // Signals are watched before the service starts: a SIGTERM that arrives while it binds and
  // initialises (the interpreter takes a while) waits in the loop instead of killing the process.
  SignalWatch term(*loop, SIGTERM, [&] { stop("SIGTERM"); });
  SignalWatch intr(*loop, SIGINT, [&] { stop("SIGINT"); });
  SignalWatch hup(*loop, SIGHUP, [&] {
    if (running == nullptr) return;
    NotifyReloading();
    log.Info("SIGHUP: reopening the log, reloading the configuration");
    if (auto st = (*logging)->Reopen(); !st) log.Error("{}", st.error().message());
    (*running)->Reload();
    NotifyReady((*running)->StatusText());
  });
  SignalWatch usr1(*loop, SIGUSR1, [&] {
    if (running != nullptr) log.Info("status: {}", (*running)->StatusText());
  });
  SignalWatch usr2(*loop, SIGUSR2, [&] {
    if (auto st = (*logging)->Reopen(); !st) {
      log.Error("{}", st.error().message());
    } else {
      log.Info("SIGUSR2: log file reopened");
    }
  });

  Context context{*loop, **logging, *inherited, stop};
  auto service = factory(context);
  if (!service) {
    failed(service.error());
    // A service refused by its configuration (a Config error) exits EX_CONFIG, as sysexits(3)
    // has it; anything else (a port in use, a missing file) 1.
    return service.error().code() == Error::Code::kConfig ? 78 : 1;
  }
  running = &*service;
  if (std::string name = (*service)->LoggerName(); !name.empty()) log = (*logging)->Get(name);
  for (const auto& s : *inherited) {
    if (s.fd) log.Warn("inherited fd {} ({}) is not used", s.fd.get(), s.name);
  }

  std::string status = (*service)->StatusText();
  Timer status_timer(*loop, [&] {
    std::string now = (*service)->StatusText();
    if (now != status) {
      status = std::move(now);
      NotifyStatus(status);
    }
  });
  status_timer.Start(std::chrono::seconds(1), true);

  Timer watchdog(*loop, [] { NotifyWatchdog(); });
  if (const uint64_t usec = WatchdogUsec(); usec > 0) {
    watchdog.Start(std::chrono::milliseconds(std::max<uint64_t>(usec / 2000, 1)), true);
  }

  NotifyReady(status);
  if (stopping) return 0;  // the service finished while starting (nothing to serve)
  auto st = loop->Run();
  if (!st) {
    log.Error("{}", st.error().message());
    return 1;
  }
  return 0;
}

}  // namespace core::daemon
