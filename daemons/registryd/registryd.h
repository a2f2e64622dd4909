#pragma once

// rpyc-registryd wiring: options (every switch and TOML key), and the Service the libcore daemon
// runtime runs: listeners (bound, or adopted from socket activation), the shared Registry, the
// pruning timer, STATUS= text, SIGHUP reload.

#include <functional>
#include <memory>
#include <string>

#include "libcore/config/cli.h"
#include "libcore/config/options.h"
#include "libcore/daemon/run.h"

namespace registryd {

struct Options {
  std::string mode = "UDP";  // UDP | TCP | both
  int64_t port = 18811;
  std::string host = "0.0.0.0";  // all IPv4 interfaces, so broadcasts arrive
  bool ipv6 = false;             // with the default host, bind "::" (IPv6 and IPv4) instead
  int64_t timeout = 240;         // pruning timeout, seconds
  bool listing = false;
  std::string logfile;
  bool quiet = false;
  std::string log = "auto";  // auto | stderr | journal
  int64_t max_entries = 65536;
  // Per source address (see sources.h); 0 turns a rate limit off.
  int64_t max_entries_per_source = 1024;
  int64_t register_rate_per_source = 20;   // REGISTERs per second
  int64_t reply_bytes_per_source = 65536;  // UDP reply bytes per second
  int64_t max_connections = 256;
  int64_t connection_timeout_ms = 5000;
  int64_t listen_backlog = 0;  // TCP; 0: the kernel's maximum (net.core.somaxconn)
};

core::config::Schema MakeSchema(Options* o);
core::config::AppInfo MakeAppInfo();

// Parses argv (defaults < -c FILE < switches). On `exit`, print `message` and exit.
core::config::CliOutcome ParseOptions(int argc, const char* const* argv, Options* o);

core::daemon::RunOptions MakeRunOptions(const Options& o);

// `reload` re-reads the options on SIGHUP. Keys in kReloadableKeys apply at once; the rest need
// a restart. Each reload logs what changed, applied or not.
inline constexpr const char* kReloadableKeys[] = {"timeout",
                                                  "listing",
                                                  "quiet",
                                                  "max-entries-per-source",
                                                  "register-rate-per-source",
                                                  "reply-bytes-per-source"};
using Reloader = std::function<core::Result<Options>()>;
core::Result<std::unique_ptr<core::daemon::Service>> MakeService(core::daemon::Context& context,
                                                                 const Options& o, Reloader reload);

}  // namespace registryd
