#pragma once

// rpyc-classicd: the classic RPyC server (SlaveService semantics, embedded CPython) as a daemon
// on the libcore runtime. main() parses the options and hands MakeService() to
// core::daemon::Run(); everything else lives here so tests link it.

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "daemons/classicd/objspace/protocol_config.h"
#include "libcore/config/cli.h"
#include "libcore/config/options.h"
#include "libcore/daemon/run.h"

namespace classicd {

inline constexpr int64_t kDefaultPort = 18812;
inline constexpr int64_t kDefaultTlsPort = 18821;

// How connections are served (README.md): a thread each, a pool of threads stepping them, a
// child process each, the first one only, or the one on fds 0/1.
enum class Mode { kThreaded, kThreadpool, kForking, kOneshot, kStdio };
// "threaded", ...: the switch's spelling, also the RPYC_MODE journal field.
const char* ModeName(Mode mode);
// Parses a mode (as the schema stores it: lower case); nullopt for anything else.
std::optional<Mode> ParseMode(std::string_view text);

// Every member is a switch and a top-level TOML key of the same name (docs/protocol.md §11 for the
// reference's switches; the rest are ours).
struct Options {
  // The --mode switch and `mode` key as given; ParseOptions() parses it into `mode`.
  std::string mode_text = "threaded";  // threaded | threadpool | forking | oneshot | stdio
  Mode mode = Mode::kThreaded;
  int64_t port = -1;  // -1: 18812, or 18821 when TLS is on (no switch or key can set -1)
  std::string host;   // empty: 127.0.0.1, or ::1 with ipv6
  bool ipv6 = false;
  std::string logfile;
  bool quiet = false;
  std::string log = "auto";        // auto | stderr | journal | file
  std::string log_level = "info";  // error | warning | info | debug (core::log::kLevelNames)
  bool register_server = false;
  std::string registry_type = "UDP";
  int64_t registry_port = 18811;
  std::string registry_host;            // empty: 255.255.255.255 for UDP; required for TCP
  std::string registry_advertise_host;  // registered instead of the source (rpyc issue #568)
  std::string ssl_keyfile;
  std::string ssl_certfile;
  std::string ssl_cafile;
  std::string ssl_crlfile;                    // revoked client certificates (needs ssl_cafile)
  bool allow_unauthenticated_remote = false;  // serve code beyond loopback without client certs
  bool vdb = false;                           // refused: obsolete upstream
  std::string unix_socket;
  std::string unix_socket_mode = "0600";
  int64_t max_connections = 1000;
  int64_t max_connections_per_peer = 64;  // 0: no limit
  int64_t max_handshakes = 256;           // 0: no limit
  int64_t tls_handshake_timeout = 10;     // seconds
  int64_t idle_timeout = 0;               // seconds; 0: off
  int64_t frame_timeout = 120;            // seconds for a whole frame once begun; 0: off
  int64_t max_frame_size = int64_t{64} << 20;
  int64_t threads = 8;         // threadpool mode: worker threads
  int64_t listen_backlog = 0;  // 0: the kernel's maximum (net.core.somaxconn)
  // What is served: "classic" (rpyc_classic's SlaveService), or a user's rpyc.Service as
  // "package.module:Name" or "package.module:factory()" (objspace::LoadService()).
  std::string service = "classic";
  // Directories put first on sys.path before the service is imported (absolute: a relative one
  // in the file is relative to the file's directory).
  std::vector<std::string> service_path;
  // [protocol] / --protocol KEY=VALUE as given; ParseOptions() parses them into protocol_config.
  std::vector<core::config::Entry> protocol;
  objspace::ProtocolConfig protocol_config;
  // Native allow-lists, checked on the accepted socket before a byte is read (allow_list.h):
  // CIDR blocks for TCP peers; users and groups (names or ids) for Unix-socket peers.
  std::vector<std::string> allow_from;
  std::vector<std::string> unix_allow_users;
  std::vector<std::string> unix_allow_groups;
  // rpyc's authenticator: "package.module:callable", called with each new connection's socket,
  // returning (sock, credentials) or raising AuthenticationError (objspace::LoadAuthenticator()).
  std::string authenticator;
  // Where each value came from (ParseOptions()), so that what a start finds wrong with one can
  // name the file's line (a service that cannot be imported: FILE:LINE: key 'service').
  core::config::Origins origins;

  bool hosted() const { return service != "classic"; }

  bool tls() const { return !ssl_keyfile.empty(); }
  // listen(2)'s backlog: listen_backlog, or the kernel's maximum for 0.
  int backlog() const;
  // The effective values: defaults that depend on other options resolved.
  uint16_t effective_port() const;
  std::string effective_host() const;
};

core::config::Schema MakeSchema(Options* o);
// Cross-option rules (key and certificate together, TCP registry needs a host, --vdb...). A
// rule broken by values from the file alone names FILE:LINE and is an Error::Config.
core::Status Validate(const Options& o, const core::config::Origins& origins = {});
core::config::AppInfo MakeAppInfo(const Options* o);
// "features: threaded ...": what this build can do (a line of --version).
std::string FeaturesText();
// --version: the version, the build's commit, the loaded CPython, OpenSSL and libevent, the
// features (startup.cc).
std::string FullVersionText();
// Opens what a start opens, without starting (--check-config): the log file's directory, the TLS
// key, certificate, CA and CRL (and that key and certificate match), the Unix socket's directory.
core::Status CheckStartFiles(const Options& o);

// Where the daemon reads its configuration when -c is not given (if the file exists).
inline constexpr const char* kDefaultConfig = RPYC_SYSCONFDIR "/rpyc/rpyc-classicd.toml";

// The [protocol] entries as rpyc's protocol_config (protocol_options.cc): an unknown key, a wrong
// type or a value out of range is an Error::Config naming FILE:LINE and the key (from the file)
// or an Error::Usage naming --protocol (from the command line).
core::Result<objspace::ProtocolConfig> ParseProtocol(
    const std::vector<core::config::Entry>& entries);
// A --protocol KEY=VALUE as the [protocol] table holds it (`allow_pickle=yes` -> true,
// `safe_attrs=a,b` -> ["a", "b"]), for --dump-config.
core::config::Entry::Value ProtocolTomlValue(const core::config::Entry& e);
// --check-config with a hosted service: starts an interpreter and imports the service as a start
// would (exit 78 with the reason when it cannot be hosted). ParseOptionsForStart's check runs it
// after CheckStartFiles.
core::Status CheckService(const Options& o);

// Parses argv (defaults < -c FILE < switches), then the mode and the [protocol] entries. On
// `exit`, print `message` and exit. ParseOptions is the reload's (and the fuzzer's); main uses
// ParseOptionsForStart, whose --version names the libraries and whose --check-config opens the
// files and imports a hosted service (startup.cc).
core::config::CliOutcome ParseOptions(int argc, const char* const* argv, Options* o);
core::config::CliOutcome ParseOptionsForStart(int argc, const char* const* argv, Options* o);
core::config::CliOutcome ParseOptionsWith(int argc, const char* const* argv,
                                          const core::config::AppInfo& info, Options* o);

core::daemon::RunOptions MakeRunOptions(const Options& o);
// "SLAVE/18812", or "SLAVE/stdio": the reference's logger name (rpyc's server names it after
// its service's name and its port). `port`: the port bound, when it differs from the options'.
std::string LoggerName(const Options& o, const std::string& service = "SLAVE", uint16_t port = 0);

// Stdio mode, before anything else runs (docs/embedding.md §1.5): moves the protocol off fds 0 and
// 1 (returned as new close-on-exec descriptors) and points fd 0 at /dev/null and fds 1 and 2 at the
// log file (or /dev/null), so nothing but frames ever reaches the peer.
struct StdioFds {
  int in = -1;
  int out = -1;
};
core::Result<StdioFds> MoveStdio(const std::string& logfile);

// `reload` re-reads the options on SIGHUP (the TLS certificate and key apply to new
// connections; the rest needs a restart).
using Reloader = std::function<core::Result<Options>()>;
core::Result<std::unique_ptr<core::daemon::Service>> MakeService(core::daemon::Context& context,
                                                                 const Options& o, StdioFds stdio,
                                                                 Reloader reload);

}  // namespace classicd
