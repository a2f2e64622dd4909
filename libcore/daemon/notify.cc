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

}  // namespace core::daemon
