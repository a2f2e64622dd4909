#include "daemons/registryd/registryd.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <iterator>
#include <optional>
#include <string_view>
#include <system_error>
#include <vector>

#include <event2/http.h>
#include <sys/socket.h>
#include <unistd.h>

#include "daemons/registryd/dnssd_link.h"
#include "daemons/registryd/etcd_link.h"
#include "daemons/registryd/registry.h"
#include "daemons/registryd/servers.h"
#include "libcore/daemon/loop.h"
#include "libcore/daemon/sockets.h"
#include "libcore/daemon/version.h"
#include "libcore/log/log.h"
#include "libcore/transport/listener.h"

namespace registryd {
namespace {

using core::Error;
using core::Fail;

class RegistryService final : public core::daemon::Service {
 public:
  RegistryService(core::daemon::Context& ctx, const Options& o, Reloader reload)
      : ctx_(ctx),
        running_(o),
        registry_(static_cast<size_t>(o.max_entries), static_cast<double>(o.timeout),
                  static_cast<size_t>(o.max_entries_per_source)),
        sources_(SourceLimitsOf(o)),
        reload_(std::move(reload)),
        prune_timer_(ctx.loop, [this] { Prune(); }) {}

  core::Status Start(const Options& o) {
    const bool udp = o.mode == "UDP" || o.mode == "both";
    const bool tcp = o.mode == "TCP" || o.mode == "both";
    std::optional<core::UniqueFd> udp_fd;
    std::optional<core::UniqueFd> tcp_fd;
    for (auto& s : ctx_.inherited) {  // socket activation wins over mode/host/port
      if (s.type == SOCK_DGRAM && !udp_fd) {
        udp_fd = std::move(s.fd);
      } else if (s.type == SOCK_STREAM && s.listening && !tcp_fd) {
        tcp_fd = std::move(s.fd);
      }
    }
    const bool activated = udp_fd || tcp_fd;
    const std::string host = o.ipv6 && o.host == "0.0.0.0" ? "::" : o.host;
    auto port = static_cast<uint16_t>(o.port);
    if (!activated && udp) {
      auto fd = core::daemon::BindUdp(host, port);
      if (!fd) return Fail(fd.error());
      udp_fd = std::move(*fd);
      // -m both -p 0: TCP takes the port number the kernel gave UDP, so both are one port.
      port = core::daemon::LocalPort(udp_fd->get());
    }
    if (!activated && tcp) {
      auto fd = core::transport::ListenTcp(
          host, port,
          o.listen_backlog > 0 ? static_cast<int>(o.listen_backlog) : core::transport::kMaxBacklog);
      if (!fd) return Fail(fd.error());
      tcp_fd = std::move(*fd);
    }
    const auto where = [&](uint16_t p) {
      return activated ? std::string("(inherited):") + std::to_string(p) + " (socket activation)"
                       : HostPort(host, std::to_string(p));
    };
    if (udp_fd) {
      const uint16_t p = core::daemon::LocalPort(udp_fd->get());
      core::log::Logger log = ctx_.logging.Get("REGSRV/UDP/" + std::to_string(p));
      udp_ = std::make_unique<UdpServer>(
          ctx_.loop, std::move(*udp_fd),
          Handler(registry_, sources_, o.listing,
                  ReplyLimits{kMaxReplyBytes, kMaxUdpListReplyBytes, true}, log));
      log.Debug("server started on {}", where(p));
    }
    if (tcp_fd) {
      const uint16_t p = core::daemon::LocalPort(tcp_fd->get());
      core::log::Logger log = ctx_.logging.Get("REGSRV/TCP/" + std::to_string(p));
      tcp_ = std::make_unique<TcpServer>(
          ctx_.loop, std::move(*tcp_fd),
          Handler(registry_, sources_, o.listing,
                  ReplyLimits{kMaxReplyBytes, kMaxReplyBytes, false}, log),
          TcpLimits{static_cast<size_t>(o.max_connections),
                    std::chrono::milliseconds(o.connection_timeout_ms)});
      log.Debug("server started on {}", where(p));
    }
    if (!udp_ && !tcp_) return Fail(Error::Config("no listener: the inherited sockets do not fit"));
    if (!o.etcd_endpoints.empty()) {
      if (auto st = StartEtcd(o); !st) return st;
    }
    if (o.dnssd) {
      if (auto st = StartDnssd(o); !st) return st;
    }
    prune_timer_.Start(std::chrono::seconds(1), true);
    return {};
  }

  // Publishing through avahi-daemon (dnssd_link.h): never fails for want of Avahi (a warning).
  core::Status StartDnssd(const Options& o) {
    DnssdOptions d;
    d.site = o.site;
    d.timeout = static_cast<double>(o.timeout);
    auto dnssd = DnssdLink::Create(ctx_.logging.Get("REGSRV/DNSSD"), std::move(d));
    if (!dnssd) return Fail(dnssd.error());
    dnssd_ = std::move(*dnssd);
    if (udp_) udp_->handler().set_dnssd(dnssd_.get());
    if (tcp_) tcp_->handler().set_dnssd(dnssd_.get());
    return {};
  }

  // Sharing through etcd (etcd_link.h): after the listeners, whose port names this registry.
  core::Status StartEtcd(const Options& o) {
    LinkOptions l;
    l.client.endpoints = EtcdEndpoints(o);
    l.client.timeout = std::chrono::seconds(2);  // per endpoint: a hung member is left soon
    l.client.ca_file = o.etcd_cafile;
    l.client.cert_file = o.etcd_certfile;
    l.client.key_file = o.etcd_keyfile;
    l.prefix = o.etcd_prefix;
    l.site = o.site;
    l.registry_id = o.registry_id;
    if (l.registry_id.empty()) {
      char name[256] = {};
      if (::gethostname(name, sizeof name - 1) != 0 || name[0] == '\0') {
        std::snprintf(name, sizeof name, "localhost");
      }
      const uint16_t port = core::daemon::LocalPort(udp_ ? udp_->fd() : tcp_->fd());
      l.registry_id = std::string(name) + ":" + std::to_string(port);
    }
    l.timeout = static_cast<double>(o.timeout);
    auto link = EtcdLink::Create(ctx_.loop, ctx_.logging.Get("REGSRV/ETCD"), std::move(l));
    if (!link) return Fail(link.error());
    link_ = std::move(*link);
    if (udp_) udp_->handler().set_link(link_.get());
    if (tcp_) tcp_->handler().set_link(link_.get());
    link_->Start();
    return {};
  }

  std::string StatusText() const override {
    const size_t services = registry_.services();
    const size_t servers = registry_.entries();
    return std::to_string(services) + (services == 1 ? " service, " : " services, ") +
           std::to_string(servers) + (servers == 1 ? " server" : " servers") +
           (link_ ? "; " + link_->StatusText() : "") + (dnssd_ ? "; " + dnssd_->StatusText() : "");
  }

  void Reload() override {
    if (!reload_) return;
    auto o = reload_();
    if (!o) {
      log().Error("reload: {}; keeping the running configuration", o.error().message());
      return;
    }
    // Compared key by key with what runs: a change that needs a restart is reported at every
    // reload until the restart.
    Options before = running_;
    const auto old_fields = MakeSchema(&before);
    const auto new_fields = MakeSchema(&*o);
    std::string applied;
    std::string pending;
    for (size_t i = 0; i < new_fields.size(); ++i) {
      const std::string was = core::config::ValueText(old_fields[i]);
      const std::string now = core::config::ValueText(new_fields[i]);
      if (was == now || new_fields[i].switches.empty()) continue;  // unchanged, or an alias key
      const std::string& key = new_fields[i].key;
      const std::string change = key + " " + Shown(was) + " -> " + Shown(now);
      const bool live = std::find(std::begin(kReloadableKeys), std::end(kReloadableKeys), key) !=
                        std::end(kReloadableKeys);
      std::string& list = live ? applied : pending;
      list += (list.empty() ? "" : ", ") + change;
    }
    running_.timeout = o->timeout;
    running_.listing = o->listing;
    running_.quiet = o->quiet;
    running_.max_entries_per_source = o->max_entries_per_source;
    running_.register_rate_per_source = o->register_rate_per_source;
    running_.reply_bytes_per_source = o->reply_bytes_per_source;
    registry_.set_timeout(static_cast<double>(o->timeout));
    if (link_) link_->set_timeout(static_cast<double>(o->timeout));
    if (dnssd_) dnssd_->set_timeout(static_cast<double>(o->timeout));
    registry_.set_max_entries_per_host(static_cast<size_t>(o->max_entries_per_source));
    sources_.set_limits(SourceLimitsOf(*o));
    if (udp_) udp_->handler().set_listing(o->listing);
    if (tcp_) tcp_->handler().set_listing(o->listing);
    if (applied.empty() && pending.empty()) log().Info("reload: configuration unchanged");
    if (!applied.empty()) log().Info("reload: applied {}", applied);
    if (!pending.empty()) log().Warn("reload: needs a restart to apply: {}", pending);
    running_.log_level = o->log_level;
    // Last: the lines above are logged at the old level.
    ctx_.logging.SetThreshold(core::log::Threshold(
        o->quiet, core::log::ParseLevel(o->log_level).value_or(core::log::Level::debug)));
  }

  void Shutdown() override {
    if (tcp_) tcp_->StopAccepting();
    if (udp_) udp_->handler().log().Debug("server closed");
    if (tcp_) tcp_->handler().log().Debug("server closed");
  }

 private:
  const core::log::Logger& log() const {
    return udp_ ? udp_->handler().log() : tcp_->handler().log();
  }

  static std::string Shown(const std::string& value) { return value.empty() ? "\"\"" : value; }

  static SourceLimits SourceLimitsOf(const Options& o) {
    SourceLimits l;
    l.registers_per_second = static_cast<double>(o.register_rate_per_source);
    l.reply_bytes_per_second = static_cast<double>(o.reply_bytes_per_source);
    return l;
  }

  void Prune() {
    const double now = core::daemon::MonotonicSeconds();
    const size_t n = registry_.Prune(now);
    if (n > 0) log().Debug("pruned {} stale server{}", n, n == 1 ? "" : "s");
    if (link_) link_->Tick(now);
    if (dnssd_) dnssd_->Tick(now);
    // Sources back at full budget are forgotten; their untold suppressed lines are told now.
    sources_.Sweep(now, [this](const std::string& host, Sources::State& s) {
      const uint64_t warnings = s.warnings.TakeSuppressed();
      const uint64_t requests = s.requests.TakeSuppressed();
      if (warnings > 0) {
        log().Log(core::log::Level::warn, {{"RPYC_PEER", host}},
                  "{} more warning(s) about {} were suppressed (more than {} in {} s)", warnings,
                  host, kWarningBurst, kLogInterval);
      }
      if (requests > 0) {
        log().Log(core::log::Level::debug, {{"RPYC_PEER", host}},
                  "{} request(s) from {} were not logged (more than {} in {} s)", requests, host,
                  kRequestLogBurst, kLogInterval);
      }
    });
  }

  core::daemon::Context& ctx_;
  Options running_;  // the configuration in effect (for reload reports)
  Registry registry_;
  Sources sources_;
  Reloader reload_;
  core::daemon::Timer prune_timer_;
  std::unique_ptr<EtcdLink> link_;    // outlives the handlers, which point at it
  std::unique_ptr<DnssdLink> dnssd_;  // as well
  std::unique_ptr<UdpServer> udp_;
  std::unique_ptr<TcpServer> tcp_;
};

}  // namespace

core::config::Schema MakeSchema(Options* o) {
  using namespace core::config;  // NOLINT(google-build-using-namespace): a table of builders
  return {
      Choice("mode", "-m,--mode", "Serving mode (case-insensitive)", &o->mode,
             {"UDP", "TCP", "both"}),
      Int("port", "-p,--port", "UDP/TCP port", &o->port, 0, 65535),
      String("host", "--host",
             "Address to bind (0.0.0.0: every IPv4 interface, so broadcasts arrive)", &o->host),
      Flag("ipv6", "-6,--ipv6", "Bind :: (IPv6 and IPv4) when --host is the default", &o->ipv6),
      Int("timeout", "-t,--timeout", "Pruning timeout in seconds", &o->timeout, 1, 86400 * 365),
      Flag("listing", "-l,--listing", "Answer LIST (-l false turns it off)", &o->listing),
      String("logfile", "-f,--file,--logfile", "Log to this file too (reopened on SIGHUP)",
             &o->logfile),
      // The key of -f/--file, as the man page promises (one of file and logfile, not both).
      String("file", "", "Alias of logfile", &o->logfile),
      Flag("quiet", "-q,--quiet", "Log errors only (whatever --log-level says)", &o->quiet),
      Choice("log-level", "--log-level",
             "Least severe lines logged: error, warning, info, debug (the reference's lines are "
             "debug lines)",
             &o->log_level, {std::begin(core::log::kLevelNames), std::end(core::log::kLevelNames)}),
      Choice("log", "--log", "Log destination: auto (journal under systemd), stderr, journal",
             &o->log, {"auto", "stderr", "journal"}),
      Int("max-entries", "--max-entries", "Cap on (service, server) entries", &o->max_entries, 1,
          10'000'000),
      Int("max-entries-per-source", "--max-entries-per-source",
          "Cap on the entries registered from one source address", &o->max_entries_per_source, 1,
          10'000'000),
      Int("register-rate-per-source", "--register-rate-per-source",
          "REGISTERs per second from one source address, bursts of 5 s worth (0: no limit)",
          &o->register_rate_per_source, 0, 1'000'000),
      Int("reply-bytes-per-source", "--reply-bytes-per-source",
          "UDP reply bytes per second to one source address (0: no limit)",
          &o->reply_bytes_per_source, 0, 1'000'000'000),
      Int("max-connections", "--max-connections",
          "Cap on open TCP connections (the oldest is closed)", &o->max_connections, 1, 65536),
      Int("connection-timeout-ms", "--connection-timeout-ms",
          "Deadline for a TCP request, from accept", &o->connection_timeout_ms, 10, 600'000),
      String("etcd-endpoints", "--etcd-endpoints",
             "Share registrations through etcd at these client URLs, comma-separated (empty: off)",
             &o->etcd_endpoints),
      String("etcd-prefix", "--etcd-prefix", "Prefix of the registry's keys in etcd",
             &o->etcd_prefix),
      String("site", "--site", "This registry's site, written into its etcd entries", &o->site),
      String("registry-id", "--registry-id",
             "This registry's name in its etcd keys (empty: <hostname>:<port>)", &o->registry_id),
      String("etcd-cafile", "--etcd-cafile", "CA of https etcd endpoints (empty: the system's)",
             &o->etcd_cafile),
      String("etcd-certfile", "--etcd-certfile", "Client certificate for https etcd endpoints",
             &o->etcd_certfile),
      String("etcd-keyfile", "--etcd-keyfile", "Key of etcd-certfile", &o->etcd_keyfile),
      Flag("dnssd", "--dnssd",
           "Publish each registered server as a DNS-SD service (_rpyc._tcp) through avahi-daemon",
           &o->dnssd),
      Int("listen-backlog", "--listen-backlog",
          "TCP connections the kernel queues for accept() (0: its maximum, net.core.somaxconn, "
          "which also caps larger values)",
          &o->listen_backlog, 0, 1'000'000),
  };
}

core::config::AppInfo MakeAppInfo() {
  core::config::AppInfo info;
  info.name = "rpyc-registryd";
  info.description = "RPyC registry server (wire-compatible with rpyc_registry)";
  // The reference's -l and -q take a value (`rpyc_registry -l true`, `-q 1`); here a bare switch
  // means true and a separate word is its value (`-l false` is off, unlike the reference).
  info.flag_values = true;
  info.typed_help = true;
  // `file` and `logfile` in one file: the loader refuses a setting given twice.
  info.default_config = kDefaultConfig;
  info.version =
      std::string("rpyc-registryd ") + RPYC_VERSION + " (commit " + core::daemon::BuildCommit() +
      ")\nRPyC registry server\nlibraries: " + core::daemon::LibraryVersions() +
      "\nfeatures: udp tcp both ipv6 socket-activation sd-notify journald toml-config etcd dnssd";
  return info;
}

std::vector<std::string> EtcdEndpoints(const Options& o) {
  std::vector<std::string> out;
  std::string_view rest = o.etcd_endpoints;
  while (!rest.empty()) {
    const size_t comma = rest.find(',');
    std::string_view item = rest.substr(0, comma);
    rest = comma == std::string_view::npos ? std::string_view() : rest.substr(comma + 1);
    while (!item.empty() && (item.front() == ' ' || item.front() == '\t')) item.remove_prefix(1);
    while (!item.empty() && (item.back() == ' ' || item.back() == '\t')) item.remove_suffix(1);
    out.emplace_back(item);  // an empty item stays, so that validation can refuse it
  }
  return out;
}

namespace {

struct Problem {
  std::string key;
  std::string why;
};

std::optional<Problem> CheckEtcd(const Options& o) {
  const auto bad = [](const char* key, std::string why) {
    return std::optional<Problem>(Problem{key, std::move(why)});
  };
  const auto printable = [](std::string_view s) {
    return std::none_of(s.begin(), s.end(), [](char c) {
      const auto u = static_cast<unsigned char>(c);
      return u < 0x20 || u == 0x7f;
    });
  };
  const bool on = !o.etcd_endpoints.empty();
  bool https = false;
  for (const auto& url : EtcdEndpoints(o)) {
    std::unique_ptr<evhttp_uri, decltype(&evhttp_uri_free)> uri(evhttp_uri_parse(url.c_str()),
                                                                &evhttp_uri_free);
    const char* scheme = uri ? evhttp_uri_get_scheme(uri.get()) : nullptr;
    const char* host = uri ? evhttp_uri_get_host(uri.get()) : nullptr;
    const char* path = uri ? evhttp_uri_get_path(uri.get()) : nullptr;
    const bool is_http = scheme != nullptr && std::strcmp(scheme, "http") == 0;
    const bool is_https = scheme != nullptr && std::strcmp(scheme, "https") == 0;
    if ((!is_http && !is_https) || host == nullptr || *host == '\0' ||
        (path != nullptr && *path != '\0' && std::strcmp(path, "/") != 0) ||
        evhttp_uri_get_query(uri.get()) != nullptr || evhttp_uri_get_userinfo(uri.get())) {
      return bad("etcd-endpoints",
                 "'" + core::config::OneLine(url) +
                     "' is not a client URL http://HOST:PORT or https://HOST:PORT (several: "
                     "comma-separated)");
    }
    https = https || is_https;
  }
  if (o.etcd_prefix.empty() || o.etcd_prefix.front() != '/' || o.etcd_prefix.back() == '/' ||
      !printable(o.etcd_prefix) || o.etcd_prefix.size() > 255) {
    return bad("etcd-prefix", "'" + core::config::OneLine(o.etcd_prefix) +
                                  "' must start with '/', not end with '/', and be at most 255 "
                                  "printable bytes");
  }
  if (!printable(o.site) || o.site.size() > 255) {
    return bad("site", "must be at most 255 printable bytes");
  }
  if (!printable(o.registry_id) || o.registry_id.size() > 255 ||
      o.registry_id.find('/') != std::string::npos) {
    return bad("registry-id", "must be at most 255 printable bytes without '/'");
  }
  const std::pair<const char*, const std::string*> files[] = {{"etcd-cafile", &o.etcd_cafile},
                                                              {"etcd-certfile", &o.etcd_certfile},
                                                              {"etcd-keyfile", &o.etcd_keyfile}};
  for (const auto& [key, path] : files) {
    if (path->empty()) continue;
    if (!on) return bad(key, "is set but etcd-endpoints is not");
    if (!https) return bad(key, "is set but no etcd endpoint is https://");
    if (::access(path->c_str(), R_OK) != 0) {
      const std::error_code ec(errno, std::generic_category());
      return bad(key, core::config::OneLine(*path) + ": " + ec.message());
    }
  }
  if (o.etcd_certfile.empty() != o.etcd_keyfile.empty()) {
    return bad(o.etcd_certfile.empty() ? "etcd-keyfile" : "etcd-certfile",
               "etcd-certfile and etcd-keyfile go together");
  }
  return std::nullopt;
}

}  // namespace

core::Status ValidateEtcd(const Options& o) {
  if (auto p = CheckEtcd(o)) return Fail(Error::Config("key '" + p->key + "': " + p->why));
  return {};
}

core::config::CliOutcome ParseOptions(int argc, const char* const* argv, Options* o) {
  core::config::AppInfo info = MakeAppInfo();
  // The etcd keys are checked together once merged; the error blames the file (exit 78) when
  // the key named in it comes from there, the command line (exit 64) otherwise.
  info.validate = [o, first = info.validate](const core::config::Origins& origins) -> core::Status {
    if (first) {
      if (auto st = first(origins); !st) return st;
    }
    auto p = CheckEtcd(*o);
    if (!p) return {};
    const std::string where = origins.FileLine(p->key);
    if (!where.empty()) return Fail(Error::Config(where + ": key '" + p->key + "': " + p->why));
    if (origins.switches.count(p->key) != 0 || origins.file.empty()) {
      return Fail(Error::Usage("--" + p->key + ": " + p->why));
    }
    // A default found wrong next to a key of the file (a TLS file without an https endpoint).
    return Fail(Error::Config(origins.file + ": key '" + p->key + "': " + p->why));
  };
  info.check = [o] { return core::log::CheckLogFile(o->logfile); };
  return core::config::ParseCommandLine(argc, argv, info, MakeSchema(o));
}

core::daemon::RunOptions MakeRunOptions(const Options& o) {
  core::daemon::RunOptions r;
  r.name = "REGSRV";
  r.log.file = o.logfile;
  r.log.quiet = o.quiet;
  r.log.level = core::log::ParseLevel(o.log_level).value_or(core::log::Level::debug);
  r.log.identifier = "rpyc-registryd";
  r.log.target = *core::log::ParseTarget(o.log);
  r.interrupt_message = "User interrupt!";  // rpyc's registry.py on KeyboardInterrupt
  return r;
}

core::Result<std::unique_ptr<core::daemon::Service>> MakeService(core::daemon::Context& context,
                                                                 const Options& o,
                                                                 Reloader reload) {
  auto service = std::make_unique<RegistryService>(context, o, std::move(reload));
  if (auto st = service->Start(o); !st) return Fail(st.error());
  return std::unique_ptr<core::daemon::Service>(std::move(service));
}

}  // namespace registryd
