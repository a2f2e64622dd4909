#pragma once

// What a reload (SIGHUP) changes: the options that apply at once (the log level, the limits, the
// TLS certificate and key, for new connections), and those that need a restart.

#include <string>
#include <vector>

#include "daemons/classicd/classicd.h"

namespace classicd {

struct ReloadPlan {
  std::vector<std::string> applied;  // "key was -> now", applied at once
  std::vector<std::string> restart;  // "key was -> now", waiting for a restart
};

// `running`: the configuration in effect (the keys a reload applies); `started`: the one the
// daemon started with (the rest, which only a restart applies: reported at every reload until
// then, as rpyc-registryd does).
ReloadPlan PlanReload(const Options& running, const Options& started, const Options& after);

}  // namespace classicd
