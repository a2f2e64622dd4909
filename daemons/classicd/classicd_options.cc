#include <iostream>

#include <CLI/CLI.hpp>

#include "daemons/classicd/classicd.h"

namespace classicd {

std::string VersionText() {
  return std::string("rpyc-classicd ") + RPYC_VERSION +
         " (RPyC classic server; wire protocol of rpyc 5.x and 6.x; modes: threaded; "
         "embedded CPython " RPYC_PYTHON_VERSION ")";
}

CommandLine ParseCommandLine(int argc, const char* const* argv) {
  CLI::App app("rpyc-classicd: a native RPyC classic server (rpyc_classic compatible)",
               "rpyc-classicd");
  Options opts;
  std::string mode = "threaded";
  app.add_option("--host", opts.host, "address to bind (default 127.0.0.1, or ::1 with --ipv6)");
  app.add_option("-p,--port", opts.port, "TCP port (default 18812)");
  app.add_flag("--ipv6", opts.ipv6, "use IPv6");
  app.add_option("-m,--mode", mode, "serving mode: threaded (only mode so far)");
  app.add_flag("-q,--quiet", opts.quiet, "log errors only (default: everything from DEBUG up)");
  app.add_option("--logfile", opts.logfile, "log to this file instead of stderr");
  app.set_version_flag("--version", VersionText());

  CommandLine out;
  try {  // adapter boundary: CLI11 reports through exceptions
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    out.exit_status = app.exit(e);
    if (e.get_exit_code() != 0) out.exit_status = 2;
    return out;
  }
  auto parsed_mode = core::server::ParseMode(mode);
  if (!parsed_mode) {
    std::cerr << "rpyc-classicd: " << parsed_mode.error().message() << "\n";
    out.exit_status = 2;
    return out;
  }
  if (*parsed_mode != core::server::Mode::kThreaded) {
    std::cerr << "rpyc-classicd: mode '" << core::server::ModeName(*parsed_mode)
              << "' is not supported yet (use threaded)\n";
    out.exit_status = 2;
    return out;
  }
  opts.mode = *parsed_mode;
  if (opts.host.empty()) opts.host = opts.ipv6 ? "::1" : "127.0.0.1";
  out.options = opts;
  return out;
}

}  // namespace classicd
