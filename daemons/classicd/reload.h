#pragma once

// What a reload (SIGHUP) changes: the options that apply at once (the log level, the limits, the
// TLS certificate and key, for new connections), and those that need a restart.

#include <string>
#include <vector>

#include "daemons/classicd/classicd.h"

namespace classicd {

struct ReloadPlan {
  std::vector<std::string> applied;  // "key=value", applied at once
  std::vector<std::string> restart;  // keys that need a restart
};

ReloadPlan PlanReload(const Options& before, const Options& after);

}  // namespace classicd
