#pragma once

// The command-line adapter (CLI11). Precedence: defaults < TOML file (-c/--config) < switches
// given explicitly on the command line. Adds -c/--config, --check-config, --version, --help.

#include <functional>
#include <string>

#include "libcore/base/result.h"
#include "libcore/config/options.h"

namespace core::config {

struct AppInfo {
  std::string name;         // program name for --help
  std::string description;  // one line
  std::string version;      // full --version text (features included)
  // Cross-field checks run after everything is merged; a failure exits kExitUsage when it is
  // an Error::Usage, kExitConfig otherwise.
  std::function<Status()> validate;
};

struct CliOutcome {
  bool exit = false;  // true: print `message` and exit with `exit_code` without running
  int exit_code = kExitOk;
  std::string message;  // help/version text for stdout, or one error line for stderr
  bool to_stderr = false;
  std::string config_path;  // the -c file that was loaded, if any
};

// argv must stay valid during the call only.
CliOutcome ParseCommandLine(int argc, const char* const* argv, const AppInfo& info,
                            const Schema& schema);

}  // namespace core::config
