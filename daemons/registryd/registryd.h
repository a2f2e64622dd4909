#pragma once

// rpyc-registryd wiring: options (every switch and TOML key), and the Service the libcore daemon
// runtime runs: listeners (bound, or adopted from socket activation), the shared Registry, the
// pruning timer, STATUS= text, SIGHUP reload.

#include <functional>
#include <memory>
#include <string>
#include <vector>

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
  // error | warning | info | debug: the reference's registry lines are debug lines, so all.
  std::string log_level = "debug";
  int64_t max_entries = 65536;
  // Per source address (see sources.h); 0 turns a rate limit off.
  int64_t max_entries_per_source = 1024;
  int64_t register_rate_per_source = 20;   // REGISTERs per second
  int64_t reply_bytes_per_source = 65536;  // UDP reply bytes per second
  int64_t max_connections = 256;
  int64_t connection_timeout_ms = 5000;
  // Sharing through etcd (issue 15): off unless etcd_endpoints is set.
  std::string etcd_endpoints;  // client URLs, comma-separated: "http://10.0.0.1:2379,..."
  std::string etcd_prefix = "/rpyc";
  std::string site;           // written into every entry; this site's servers are answered first
  std::string registry_id;    // this registry's name in the keys; empty: "<hostname>:<port>"
  std::string etcd_cafile;    // https endpoints: the CA (empty: the system's)
  std::string etcd_certfile;  // https endpoints: a client certificate and its key
  std::string etcd_keyfile;
  // Publishing through avahi-daemon (issue 15): _rpyc._tcp services of this registry's servers.
  bool dnssd = false;
  int64_t listen_backlog = 0;  // TCP; 0: the kernel's maximum (net.core.somaxconn)
};

// The etcd endpoints of etcd_endpoints (split at commas, blanks trimmed).
std::vector<std::string> EtcdEndpoints(const Options& o);
// Checks the etcd keys together; the message names the key ("key 'etcd-prefix': ...").
core::Status ValidateEtcd(const Options& o);

core::config::Schema MakeSchema(Options* o);
core::config::AppInfo MakeAppInfo();

// Where the daemon reads its configuration when -c is not given (if the file exists).
inline constexpr const char* kDefaultConfig = RPYC_SYSCONFDIR "/rpyc/rpyc-registryd.toml";

// Parses argv (defaults < -c FILE < switches). On `exit`, print `message` and exit.
core::config::CliOutcome ParseOptions(int argc, const char* const* argv, Options* o);

core::daemon::RunOptions MakeRunOptions(const Options& o);

// `reload` re-reads the options on SIGHUP. Keys in kReloadableKeys apply at once; the rest need
// a restart. Each reload logs what changed, applied or not.
inline constexpr const char* kReloadableKeys[] = {"timeout",
                                                  "listing",
                                                  "quiet",
                                                  "log-level",
                                                  "max-entries-per-source",
                                                  "register-rate-per-source",
                                                  "reply-bytes-per-source"};
using Reloader = std::function<core::Result<Options>()>;
core::Result<std::unique_ptr<core::daemon::Service>> MakeService(core::daemon::Context& context,
                                                                 const Options& o, Reloader reload);

}  // namespace registryd
