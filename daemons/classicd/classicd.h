#pragma once

// rpyc-classicd: the classic RPyC server (SlaveService semantics, embedded CPython) as a daemon.
// main() parses the command line and calls Run(); everything else lives here so tests link it.

#include <cstdint>
#include <optional>
#include <string>

#include "libcore/server/server.h"

namespace classicd {

struct Options {
  std::string host;  // empty: 127.0.0.1, or ::1 with ipv6 (as rpyc_classic)
  uint16_t port = 18812;
  bool ipv6 = false;
  core::server::Mode mode = core::server::Mode::kThreaded;
  bool quiet = false;
  std::string logfile;  // empty: stderr
};

// Either options to run with, or an exit status for main(): 0 after --help/--version (printed to
// stdout), 2 after a usage error (one line printed to stderr).
struct CommandLine {
  std::optional<Options> options;
  int exit_status = 0;
};
CommandLine ParseCommandLine(int argc, const char* const* argv);

// "rpyc-classicd 0.1.0 (...)": the version and what this build can do.
std::string VersionText();

// Serves until SIGTERM or SIGINT; returns the process exit status. Call from main() before any
// other thread exists (it blocks the stop signals for every thread it starts).
int Run(const Options& options);

}  // namespace classicd
