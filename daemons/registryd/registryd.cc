#include "daemons/registryd/registryd.h"

#include <optional>
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
        registry_(static_cast<size_t>(o.max_entries), static_cast<double>(o.timeout)),
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
    const auto port = static_cast<uint16_t>(o.port);
    if (!activated && udp) {
      auto fd = core::daemon::BindUdp(host, port);
      if (!fd) return Fail(fd.error());
      udp_fd = std::move(*fd);
    }
    if (!activated && tcp) {
      auto fd = core::transport::ListenTcp(host, port, 128);
      if (!fd) return Fail(fd.error());
      tcp_fd = std::move(*fd);
    }
    if (udp_fd) {
      const uint16_t p = core::daemon::LocalPort(udp_fd->get());
      core::log::Logger log = ctx_.logging.Get("REGSRV/UDP/" + std::to_string(p));
      udp_ = std::make_unique<UdpServer>(
          ctx_.loop, std::move(*udp_fd),
          Handler(registry_, o.listing, ReplyLimits{kMaxReplyBytes, kMaxUdpListReplyBytes}, log));
      log.Debug("server started on {}:{}{}", activated ? "(inherited)" : host, p,
                activated ? " (socket activation)" : "");
    }
    if (tcp_fd) {
      const uint16_t p = core::daemon::LocalPort(tcp_fd->get());
      core::log::Logger log = ctx_.logging.Get("REGSRV/TCP/" + std::to_string(p));
      tcp_ = std::make_unique<TcpServer>(
          ctx_.loop, std::move(*tcp_fd),
          Handler(registry_, o.listing, ReplyLimits{kMaxReplyBytes, kMaxReplyBytes}, log),
          TcpLimits{static_cast<size_t>(o.max_connections),
                    std::chrono::milliseconds(o.connection_timeout_ms)});
      log.Debug("server started on {}:{}{}", activated ? "(inherited)" : host, p,
                activated ? " (socket activation)" : "");
    }
    if (!udp_ && !tcp_) return Fail(Error::Config("no listener: the inherited sockets do not fit"));
    prune_timer_.Start(std::chrono::seconds(1), true);
    return {};
  }

  std::string StatusText() const override {
    return std::to_string(registry_.services()) + " services, " +
           std::to_string(registry_.entries()) + " servers";
  }

  void Reload() override {
    if (!reload_) return;
    auto o = reload_();
    if (!o) {
      log().Error("reload: {}; keeping the running configuration", o.error().message());
      return;
    }
    registry_.set_timeout(static_cast<double>(o->timeout));
    if (udp_) udp_->handler().set_listing(o->listing);
    if (tcp_) tcp_->handler().set_listing(o->listing);
    log().Info("reload: timeout={} listing={} (other settings need a restart)", o->timeout,
               o->listing);
  }

  void Shutdown() override {
    if (tcp_) tcp_->StopAccepting();
    log().Debug("server closed");
  }

 private:
  const core::log::Logger& log() const {
    return udp_ ? udp_->handler().log() : tcp_->handler().log();
  }

  void Prune() {
    const size_t n = registry_.Prune(core::daemon::MonotonicSeconds());
    if (n > 0) log().Debug("pruned {} stale server(s)", n);
  }

  core::daemon::Context& ctx_;
  Registry registry_;
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
      Flag("listing", "-l,--listing", "Answer LIST (--listing=false turns it off)", &o->listing),
      String("logfile", "-f,--file,--logfile", "Log to this file too (reopened on SIGHUP)",
             &o->logfile),
      Flag("quiet", "-q,--quiet", "Log errors only", &o->quiet),
      Choice("log", "--log", "Log destination: auto (journal under systemd), stderr, journal",
             &o->log, {"auto", "stderr", "journal"}),
      Int("max-entries", "--max-entries", "Cap on (service, server) entries", &o->max_entries, 1,
          10'000'000),
      Int("max-connections", "--max-connections",
          "Cap on open TCP connections (the oldest is closed)", &o->max_connections, 1, 65536),
      Int("connection-timeout-ms", "--connection-timeout-ms",
          "Deadline for a TCP request, from accept", &o->connection_timeout_ms, 10, 600'000),
  };
}

core::config::AppInfo MakeAppInfo() {
  core::config::AppInfo info;
  info.name = "rpyc-registryd";
  info.description = "RPyC registry server (wire-compatible with rpyc_registry)";
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
