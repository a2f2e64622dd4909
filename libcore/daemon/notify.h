#pragma once

// sd_notify(3) for Type=notify units. Each call is a no-op when NOTIFY_SOCKET is unset.

#include <cstdint>
#include <string_view>

namespace core::daemon {

void NotifyReady(std::string_view status);
void NotifyStatus(std::string_view status);
void NotifyReloading();
void NotifyStopping();
void NotifyWatchdog();
// The watchdog interval the service manager asked for (WATCHDOG_USEC), 0 when none.
uint64_t WatchdogUsec();

}  // namespace core::daemon
