#include "libcore/daemon/notify.h"

#include <string>

#include <systemd/sd-daemon.h>

namespace core::daemon {

void NotifyReady(std::string_view status) {
  sd_notify(0, ("READY=1\nSTATUS=" + std::string(status)).c_str());
}

void NotifyStatus(std::string_view status) {
  sd_notify(0, ("STATUS=" + std::string(status)).c_str());
}

void NotifyReloading() { sd_notify(0, "RELOADING=1"); }

void NotifyStopping() { sd_notify(0, "STOPPING=1"); }

void NotifyWatchdog() { sd_notify(0, "WATCHDOG=1"); }

uint64_t WatchdogUsec() {
  uint64_t usec = 0;
  return sd_watchdog_enabled(0, &usec) > 0 ? usec : 0;
}

}  // namespace core::daemon
