// rpyc-classicd's options: one schema drives the TOML file and the command line.

#include <cerrno>
#include <iterator>

#include <fcntl.h>
#include <unistd.h>

#include "daemons/classicd/allow_list.h"
#include "daemons/classicd/classicd.h"
#include "libcore/log/log.h"
#include "libcore/transport/listener.h"

namespace classicd {

using core::Error;
using core::Fail;

namespace {

constexpr const char* kModeNames[] = {"threaded", "threadpool", "forking", "oneshot", "stdio"};

// The [protocol] field: the file's entries are checked as it is read (its errors in file order);
// --dump-config writes a --protocol entry with its key's type.
core::config::Field Typed(core::config::Field f) {
  f.check_entry = [](const core::config::Entry& e) -> core::Status {
    if (auto pc = ParseProtocol({e}); !pc) return Fail(pc.error());
    return {};
  };
  f.typed_entry = ProtocolTomlValue;
  return f;
}

}  // namespace

const char* ModeName(Mode mode) { return kModeNames[static_cast<int>(mode)]; }

std::optional<Mode> ParseMode(std::string_view text) {
  for (int i = 0; i < static_cast<int>(std::size(kModeNames)); ++i) {
    if (text == kModeNames[i]) return static_cast<Mode>(i);
  }
  return std::nullopt;
}

uint16_t Options::effective_port() const {
  if (port >= 0) return static_cast<uint16_t>(port);
  return static_cast<uint16_t>(tls() ? kDefaultTlsPort : kDefaultPort);
}

int Options::backlog() const {
  return listen_backlog > 0 ? static_cast<int>(listen_backlog) : core::transport::kMaxBacklog;
}

std::string LoggerName(const Options& o, const std::string& service, uint16_t port) {
  return service + "/" +
         (o.mode == Mode::kStdio ? std::string("stdio")
                                 : std::to_string(port != 0 ? port : o.effective_port()));
}

std::string Options::effective_host() const {
  if (!host.empty()) return host;
  return ipv6 ? "::1" : "127.0.0.1";
}

core::config::Schema MakeSchema(Options* o) {
  using namespace core::config;  // NOLINT(google-build-using-namespace): a table of builders
  return {
      Choice("mode", "-m,--mode",
             "Serving mode: threaded, threadpool, forking, oneshot, stdio (case-insensitive)",
             &o->mode_text, {std::begin(kModeNames), std::end(kModeNames)}),
      Unset(Int("port", "-p,--port", "TCP port (0: any free port)", &o->port, 0, 65535),
            "18812, or 18821 with TLS"),
      String("host", "--host",
             "Address to bind (empty: 127.0.0.1, or ::1 with --ipv6; the classic service runs "
             "arbitrary code, so it is never exposed by default)",
             &o->host),
      Flag("ipv6", "--ipv6", "Use IPv6 (default host ::1)", &o->ipv6),
      String("logfile", "--logfile", "Log to this file too (reopened on SIGHUP)", &o->logfile),
      Flag("quiet", "-q,--quiet", "Log errors only (whatever --log-level says)", &o->quiet),
      Choice("log_level", "--log-level",
             "Least severe lines logged: error, warning, info (the reference's lines), debug "
             "(also the daemon's own per-connection lines)",
             &o->log_level, {std::begin(core::log::kLevelNames), std::end(core::log::kLevelNames)}),
      Choice("log", "--log",
             "Log destination: auto (journal under systemd), stderr, journal, file (logfile only)",
             &o->log, {"auto", "stderr", "journal", "file"}),
      Flag("register", "--register",
           "Register with a registry server as SLAVE (a hosted service: its aliases)",
           &o->register_server),
      Choice("registry_type", "--registry-type", "Registry protocol", &o->registry_type,
             {"UDP", "TCP"}),
      Int("registry_port", "--registry-port", "Registry port", &o->registry_port, 1, 65535),
      String("registry_host", "--registry-host",
             "Registry host (UDP default 255.255.255.255; required for TCP)", &o->registry_host),
      String("registry_advertise_host", "--registry-advertise-host",
             "Host to register instead of the packet's source (NAT, multi-homed hosts)",
             &o->registry_advertise_host),
      String("ssl_keyfile", "--ssl-keyfile", "TLS private key (requires --ssl-certfile)",
             &o->ssl_keyfile),
      String("ssl_certfile", "--ssl-certfile", "TLS certificate chain (requires --ssl-keyfile)",
             &o->ssl_certfile),
      String("ssl_cafile", "--ssl-cafile",
             "CA file: client certificates are required and verified against it", &o->ssl_cafile),
      String("ssl_crlfile", "--ssl-crlfile",
             "CRL file (PEM): client certificates it revokes are refused (requires --ssl-cafile; "
             "re-read on SIGHUP)",
             &o->ssl_crlfile),
      Flag("allow_unauthenticated_remote", "--allow-unauthenticated-remote",
           "Serve on an address reachable beyond loopback without client certificates (anyone "
           "who can connect runs code as the daemon's user); refused otherwise",
           &o->allow_unauthenticated_remote),
      Flag("vdb", "--vdb", "Obsolete upstream; refused", &o->vdb),
      String("unix_socket", "--unix-socket", "Also listen on this Unix-domain socket path",
             &o->unix_socket),
      String("unix_socket_mode", "--unix-socket-mode", "Permissions of the Unix socket (octal)",
             &o->unix_socket_mode),
      Int("max_connections", "--max-connections", "Cap on open connections (more are refused)",
          &o->max_connections, 1, 1'000'000),
      Int("max_connections_per_peer", "--max-connections-per-peer",
          "Cap on open connections from one peer: an IPv4 address or an IPv6 /64 (0: none)",
          &o->max_connections_per_peer, 0, 1'000'000),
      Int("max_handshakes", "--max-handshakes",
          "Cap on connections still in their TLS handshake or authenticator (more are refused; 0: "
          "none)",
          &o->max_handshakes, 0, 1'000'000),
      Int("tls_handshake_timeout", "--tls-handshake-timeout", "Seconds a TLS handshake may take",
          &o->tls_handshake_timeout, 1, 3600),
      Int("idle_timeout", "--idle-timeout",
          "Close a connection after this many seconds without a byte from the client (0: off)",
          &o->idle_timeout, 0, 86400 * 365),
      Int("frame_timeout", "--frame-timeout",
          "Close a connection whose frame, once begun, is not complete within this many "
          "seconds (a peer trickling bytes; 0: off)",
          &o->frame_timeout, 0, 86400),
      Int("max_frame_size", "--max-frame-size", "Largest frame accepted from a client, in bytes",
          &o->max_frame_size, 1024, int64_t{1} << 32),
      Int("threads", "--threads",
          "Worker threads in threadpool mode (idle connections hold no thread)", &o->threads, 1,
          4096),
      String("service", "--service",
             "What is served: classic, or your rpyc.Service as package.module:Name or "
             "package.module:factory() (imported at start)",
             &o->service),
      Paths("service_path", "--service-path",
            "Directory put first on sys.path before the service is imported (repeatable; the "
            "service-path list, relative to the configuration file)",
            &o->service_path),
      Typed(Entries("protocol", "--protocol",
                    "rpyc protocol_config key for a hosted service (repeatable; the [protocol] "
                    "table)",
                    &o->protocol)),
      List("allow_from", "--allow-from",
           "Serve TCP peers in these address blocks only (CIDR: 10.0.0.0/8, ::1/128); others are "
           "closed before a byte is read (repeatable or comma-separated; empty: everyone)",
           &o->allow_from),
      List("unix_allow_users", "--unix-allow-users",
           "Serve Unix-socket peers running as these users only (names or uids, by SO_PEERCRED; "
           "with unix_allow_groups: either list admits)",
           &o->unix_allow_users),
      List("unix_allow_groups", "--unix-allow-groups",
           "Serve Unix-socket peers in these groups only (names or gids: the peer's group or one "
           "of its supplementary groups, by SO_PEERCRED)",
           &o->unix_allow_groups),
      String("authenticator", "--authenticator",
             "rpyc authenticator package.module:callable, called with each new connection's "
             "socket within tls_handshake_timeout; returns (sock, credentials) or raises "
             "AuthenticationError to refuse it (imported at start)",
             &o->authenticator),
      Int("listen_backlog", "--listen-backlog",
          "Connections the kernel queues for accept() per listener (0: its maximum, "
          "net.core.somaxconn, which also caps larger values)",
          &o->listen_backlog, 0, 1'000'000),
  };
}

namespace {

// A rule broken only by values from the configuration file is a configuration error that names
// the file and line (exit 78); one that involves a switch is a usage error (exit 64).
Error Broken(const core::config::Origins& origins, std::initializer_list<const char*> keys,
             const std::string& switch_text, const std::string& key_text) {
  for (const char* k : keys) {
    if (origins.switches.count(k) != 0) return Error::Usage(switch_text);
  }
  for (const char* k : keys) {
    if (auto where = origins.FileLine(k); !where.empty()) {
      return Error::Config(where + ": key '" + origins.Written(k) + "': " + key_text);
    }
  }
  return Error::Usage(switch_text);
}

}  // namespace

core::Status Validate(const Options& o, const core::config::Origins& origins) {
  if (o.vdb) {
    return Fail(
        Broken(origins, {"vdb"},
               "--vdb is not supported: the vdb service is obsolete upstream (removed from rpyc)",
               "not supported: the vdb service is obsolete upstream (removed from rpyc)"));
  }
  if (!o.ssl_keyfile.empty() && o.ssl_certfile.empty()) {
    return Fail(Broken(origins, {"ssl_keyfile"}, "--ssl-keyfile requires --ssl-certfile",
                       "requires ssl_certfile"));
  }
  if (o.ssl_keyfile.empty() && !o.ssl_certfile.empty()) {
    return Fail(Broken(origins, {"ssl_certfile"}, "--ssl-certfile requires --ssl-keyfile",
                       "requires ssl_keyfile"));
  }
  if (!o.ssl_cafile.empty() && o.ssl_keyfile.empty()) {
    return Fail(Broken(origins, {"ssl_cafile"},
                       "--ssl-cafile requires --ssl-keyfile and --ssl-certfile",
                       "requires ssl_keyfile and ssl_certfile"));
  }
  if (!o.ssl_crlfile.empty() && o.ssl_cafile.empty()) {
    return Fail(Broken(origins, {"ssl_crlfile"}, "--ssl-crlfile requires --ssl-cafile",
                       "requires ssl_cafile"));
  }
  if (o.register_server && o.registry_type == "TCP" && o.registry_host.empty()) {
    return Fail(Broken(origins, {"register", "registry_type"},
                       "--registry-type TCP requires --registry-host",
                       "registry_type TCP requires registry_host"));
  }
  if (o.log == "file" && o.logfile.empty()) {  // would log nowhere
    return Fail(Broken(origins, {"log", "logfile"}, "--log file requires --logfile",
                       "log = \"file\" requires logfile"));
  }
  if (ParseMode(o.mode_text) == Mode::kStdio && o.log == "stderr") {
    return Fail(Broken(origins, {"mode", "log"},
                       "--mode stdio cannot log to stderr (use --logfile or --log journal)",
                       "mode stdio cannot log to stderr (use logfile or log = \"journal\")"));
  }
  if (!o.hosted() && !o.protocol.empty()) {
    return Fail(Broken(origins, {"protocol"},
                       "--protocol applies to a hosted service (--service package.module:Name); "
                       "the classic service runs with rpyc_classic's configuration",
                       "applies to a hosted service (service = \"package.module:Name\"); the "
                       "classic service runs with rpyc_classic's configuration"));
  }
  if (!o.hosted() && !o.service_path.empty()) {
    return Fail(Broken(origins, {"service_path"},
                       "--service-path applies to a hosted service (--service "
                       "package.module:Name)",
                       "applies to a hosted service (service = \"package.module:Name\")"));
  }
  if (auto pc = ParseProtocol(o.protocol); !pc) return Fail(pc.error());
  if (auto b = AllowList::ParseBlocks(o.allow_from); !b) {
    return Fail(Broken(origins, {"allow_from"}, "--allow-from: " + b.error().message(),
                       b.error().message()));
  }
  if (auto u = AllowList::ParseUsers(o.unix_allow_users); !u) {
    return Fail(Broken(origins, {"unix_allow_users"}, "--unix-allow-users: " + u.error().message(),
                       u.error().message()));
  }
  if (auto g = AllowList::ParseGroups(o.unix_allow_groups); !g) {
    return Fail(Broken(origins, {"unix_allow_groups"},
                       "--unix-allow-groups: " + g.error().message(), g.error().message()));
  }
  if (!o.authenticator.empty()) {
    const size_t colon = o.authenticator.find(':');
    if (colon == std::string::npos || colon == 0 || colon + 1 == o.authenticator.size()) {
      return Fail(
          Broken(origins, {"authenticator"},
                 "--authenticator '" + o.authenticator + "': expected package.module:callable",
                 "'" + o.authenticator + "': expected package.module:callable"));
    }
    if (o.tls()) {
      return Fail(Broken(
          origins, {"authenticator", "ssl_keyfile"},
          "--authenticator cannot be combined with TLS (--ssl-keyfile): the daemon's TLS "
          "already authenticates clients by certificate (--ssl-cafile)",
          "authenticator cannot be combined with TLS (ssl_keyfile): the daemon's TLS already "
          "authenticates clients by certificate (ssl_cafile)"));
    }
    if (ParseMode(o.mode_text) == Mode::kStdio) {
      return Fail(Broken(origins, {"authenticator", "mode"},
                         "--authenticator needs a socket: not with --mode stdio",
                         "authenticator needs a socket: not with mode stdio"));
    }
  }
  if (o.unix_socket_mode.empty() ||
      o.unix_socket_mode.find_first_not_of("01234567") != std::string::npos ||
      o.unix_socket_mode.size() > 4) {
    return Fail(Broken(origins, {"unix_socket_mode"},
                       "--unix-socket-mode '" + o.unix_socket_mode + "' is not octal",
                       "'" + o.unix_socket_mode + "' is not octal"));
  }
  return {};
}

std::string FeaturesText() {
  return "features: threaded threadpool forking oneshot stdio unix-socket tls socket-activation "
         "sd-notify watchdog journald registration toml-config";
}

core::config::AppInfo MakeAppInfo(const Options* o) {
  core::config::AppInfo info;
  info.name = "rpyc-classicd";
  info.description = "RPyC classic server (rpyc_classic compatible, embedded CPython)";
  // Without the libraries (ParseOptionsForStart() names them): the fuzzer links none.
  info.version = std::string("rpyc-classicd ") + RPYC_VERSION + "\n" + FeaturesText();
  info.typed_help = true;
  info.default_config = kDefaultConfig;
  info.validate = [o](const core::config::Origins& origins) { return Validate(*o, origins); };
  return info;
}

core::config::CliOutcome ParseOptions(int argc, const char* const* argv, Options* o) {
  return ParseOptionsWith(argc, argv, MakeAppInfo(o), o);
}

core::config::CliOutcome ParseOptionsWith(int argc, const char* const* argv,
                                          const core::config::AppInfo& info, Options* o) {
  auto outcome = core::config::ParseCommandLine(argc, argv, info, MakeSchema(o));
  // The schema only stores one of kModeNames.
  if (!outcome.exit) {
    o->origins = outcome.origins;
    o->mode = ParseMode(o->mode_text).value_or(Mode::kThreaded);
    if (auto pc = ParseProtocol(o->protocol)) o->protocol_config = *pc;  // Validate() checked it
  }
  return outcome;
}

core::daemon::RunOptions MakeRunOptions(const Options& o) {
  core::daemon::RunOptions r;
  r.name = LoggerName(o);
  r.log.file = o.logfile;
  r.log.quiet = o.quiet;
  r.log.level = core::log::ParseLevel(o.log_level).value_or(core::log::Level::info);
  r.log.identifier = "rpyc-classicd";
  r.log.target = *core::log::ParseTarget(o.log);
  r.interrupt_message = "keyboard interrupt!";  // rpyc's server.py, as its docs show
  r.start_failure_to_stderr = o.mode != Mode::kStdio;
  if (o.mode == Mode::kStdio && r.log.target != core::log::Target::kJournal) {
    // Under systemd (JOURNAL_STREAM) the journal; otherwise the log file only.
    const char* stream = std::getenv("JOURNAL_STREAM");  // NOLINT(concurrency-mt-unsafe)
    const bool journal = stream != nullptr && *stream != '\0';
    r.log.target = journal ? core::log::Target::kJournal : core::log::Target::kFile;
  }
  return r;
}

core::Result<StdioFds> MoveStdio(const std::string& logfile) {
  auto err = [](const char* what) {
    return Fail(Error::Io(what + (": " + core::ErrnoText(errno))));
  };
  StdioFds fds;
  fds.in = fcntl(0, F_DUPFD_CLOEXEC, 3);
  if (fds.in < 0) return err("moving fd 0");
  fds.out = fcntl(1, F_DUPFD_CLOEXEC, 3);
  if (fds.out < 0) return err("moving fd 1");
  const int null_fd = ::open("/dev/null", O_RDWR | O_CLOEXEC);
  if (null_fd < 0) return err("/dev/null");
  int sink = null_fd;
  if (!logfile.empty()) {
    const int f = ::open(logfile.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
    if (f >= 0) sink = f;
  }
  if (::dup2(null_fd, 0) < 0 || ::dup2(sink, 1) < 0 || ::dup2(sink, 2) < 0) return err("dup2");
  if (sink != null_fd) ::close(sink);
  ::close(null_fd);
  return fds;
}

}  // namespace classicd
