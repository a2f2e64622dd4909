#pragma once

// An AvahiPoll over the daemon's libevent loop, so libavahi-client runs on the loop's thread
// with no lock and no extra thread (Debian ships adapters only for glib and Qt). Watches and
// timeouts are libevent events; Avahi's absolute timeouts (gettimeofday) become relative delays.

#include <avahi-common/watch.h>

#include "libcore/daemon/loop.h"

namespace core::dnssd {

class AvahiLoopPoll {
 public:
  explicit AvahiLoopPoll(daemon::EventLoop& loop);
  AvahiLoopPoll(const AvahiLoopPoll&) = delete;
  AvahiLoopPoll& operator=(const AvahiLoopPoll&) = delete;

  // Borrowed: valid while this object lives (outlive every AvahiClient made with it).
  const AvahiPoll* api() const { return &api_; }

 private:
  AvahiPoll api_{};
};

}  // namespace core::dnssd
