#pragma once

// The command-line adapter (CLI11). Precedence: defaults < TOML file (-c/--config, or the
// daemon's default file when it exists) < switches given explicitly on the command line. Adds
// -c/--config, --check-config, --dump-config, -v/--version, --help.

#include <functional>
#include <map>
#include <set>
#include <string>

#include "libcore/base/result.h"
#include "libcore/config/options.h"

namespace core::config {

// Where the options' values came from, so that a check of several options together can blame
// the configuration file (exit 78, FILE:LINE) or the command line (exit 64).
struct Origins {
  std::string file;                                   // the -c file, empty when none
  std::map<std::string, int> file_lines;              // key -> line, for the keys the file sets
  std::set<std::string> switches;                     // keys given by an explicit switch
  std::map<std::string, std::string> file_spellings;  // key -> as the file spells it

  // "FILE:LINE" when `key`'s value comes from the file (not overridden by a switch), else "".
  std::string FileLine(const std::string& key) const;
  // The key as the file spells it ("ssl-keyfile" for ssl_keyfile), or `key` itself.
  std::string Written(const std::string& key) const;
};

struct AppInfo {
  std::string name;         // program name for --help
  std::string description;  // one line
  std::string version;      // full --version text (features included)
  // Cross-field checks run after everything is merged; a failure exits kExitUsage when it is
  // an Error::Usage, kExitConfig otherwise (a check blames the file through `origins`).
  std::function<Status(const Origins& origins)> validate;
  // --check-config, after `validate`: opens what a start opens (key, certificate, log file's
  // directory..., the service rpyc-classicd is to host). A failure exits kExitConfig with its
  // message (kExitUsage when it is an Error::Usage).
  // `origins` as `validate` got them, so that its errors can name FILE:LINE too.
  std::function<Status(const Origins& origins)> check;
  // Read when -c is not given and the file exists (sshd, chronyd); `-c ''` reads none.
  std::string default_config;
  // Opt-in (rpyc-registryd; other daemons keep the plain behaviour):
  //  * flag_values: a boolean switch also takes a value as a separate word, as the reference's
  //    `-l true` / `-q 1` do: `-l`, `-l true`, `-l no`, `--listing 0` and `--listing=off` all
  //    work; a word that is not a switch and not a boolean is an error naming the switch.
  //  * typed_help: --help shows each value's type (INT, TEXT, [BOOL]) or choices ({UDP,TCP}),
  //    and no "[default: ]" for an empty default.
  bool flag_values = false;
  bool typed_help = false;
};

struct CliOutcome {
  bool exit = false;  // true: print `message` and exit with `exit_code` without running
  int exit_code = kExitOk;
  std::string message;  // help/version text for stdout, or one error line for stderr
  bool to_stderr = false;
  std::string config_path;  // the file that was loaded (-c or the default), if any
  Origins origins;          // where each value came from (when not `exit`)
};

// An outcome's message as one log line: the errors of a file (one line each) joined by "; ".
std::string LogLine(const CliOutcome& outcome);

// argv must stay valid during the call only.
CliOutcome ParseCommandLine(int argc, const char* const* argv, const AppInfo& info,
                            const Schema& schema);

}  // namespace core::config
