#include "daemons/registryd/registryd.h"

#include <algorithm>
#include <optional>
#include <string_view>
#include <vector>

#include <sys/socket.h>

#include "daemons/registryd/registry.h"
#include "daemons/registryd/servers.h"
#include "libcore/daemon/loop.h"
#include "libcore/daemon/sockets.h"
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
    prune_timer_.Start(std::chrono::seconds(1), true);
    return {};
  }

  std::string StatusText() const override {
    const size_t services = registry_.services();
    const size_t servers = registry_.entries();
    return std::to_string(services) + (services == 1 ? " service, " : " services, ") +
           std::to_string(servers) + (servers == 1 ? " server" : " servers");
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
    registry_.set_max_entries_per_host(static_cast<size_t>(o->max_entries_per_source));
    sources_.set_limits(SourceLimitsOf(*o));
    if (udp_) udp_->handler().set_listing(o->listing);
    if (tcp_) tcp_->handler().set_listing(o->listing);
    if (applied.empty() && pending.empty()) log().Info("reload: configuration unchanged");
    if (!applied.empty()) log().Info("reload: applied {}", applied);
    if (!pending.empty()) log().Warn("reload: needs a restart to apply: {}", pending);
    ctx_.logging.SetQuiet(o->quiet);  // last: the lines above are logged at the old level
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
      Flag("quiet", "-q,--quiet", "Log errors only", &o->quiet),
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
  info.validate = [](const core::config::Origins& origins) -> core::Status {
    const auto file = origins.file_lines.find("file");
    if (file != origins.file_lines.end() && origins.file_lines.count("logfile") != 0) {
      return Fail(Error::Config(origins.file + ":" + std::to_string(file->second) +
                                ": keys 'file' and 'logfile' are the same setting; keep one"));
    }
    return {};
  };
  info.version =
      "rpyc-registryd 0.1.0\nfeatures: udp tcp both ipv6 socket-activation sd-notify journald "
      "toml-config";
  return info;
}

core::config::CliOutcome ParseOptions(int argc, const char* const* argv, Options* o) {
  return core::config::ParseCommandLine(argc, argv, MakeAppInfo(), MakeSchema(o));
}

core::daemon::RunOptions MakeRunOptions(const Options& o) {
  core::daemon::RunOptions r;
  r.name = "REGSRV";
  r.log.file = o.logfile;
  r.log.quiet = o.quiet;
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
