// rpyc-registrar: announces a port to a registry until SIGTERM, then unregisters. A thin driver
// of core::registrar for tests and for operators checking a registry by hand.

#include <cstdio>

#include "libcore/config/cli.h"
#include "libcore/daemon/run.h"
#include "libcore/registrar/registrar.h"

namespace {

struct ToolOptions {
  std::string type = "UDP";
  std::string registry_host;
  int64_t registry_port = 18811;
  std::string bind;
  std::string aliases = "SLAVE";
  int64_t port = 18812;
  int64_t interval_ms = 60'000;
  int64_t retry_ms = 1'000;
  bool quiet = false;
};

class RegistrarService final : public core::daemon::Service {
 public:
  explicit RegistrarService(std::unique_ptr<core::registrar::Registrar> r) : r_(std::move(r)) {}
  std::string StatusText() const override {
    return std::to_string(r_->successes()) + " registrations, " + std::to_string(r_->failures()) +
           " failures";
  }
  void Shutdown() override { r_->Stop(); }

 private:
  std::unique_ptr<core::registrar::Registrar> r_;
};

}  // namespace

int main(int argc, char** argv) {
  ToolOptions o;
  using namespace core::config;  // NOLINT(google-build-using-namespace)
  const Schema schema = {
      Choice("registry-type", "--registry-type", "UDP or TCP", &o.type, {"UDP", "TCP"}),
      String("registry-host", "--registry-host", "Registry address (UDP: 255.255.255.255)",
             &o.registry_host),
      Int("registry-port", "--registry-port", "Registry port", &o.registry_port, 1, 65535),
      String("bind", "--bind", "Local address to send from", &o.bind),
      String("aliases", "--aliases", "Comma-separated service names", &o.aliases),
      Int("port", "-p,--port", "The port to announce", &o.port, 0, 65535),
      Int("interval-ms", "--interval-ms", "Re-register period", &o.interval_ms, 10, 3'600'000),
      Int("retry-ms", "--retry-ms", "Retry period after a failure", &o.retry_ms, 10, 3'600'000),
      Flag("quiet", "-q,--quiet", "Log errors only", &o.quiet),
  };
  AppInfo info;
  info.name = "rpyc-registrar";
  info.description = "Announce a port to an RPyC registry until SIGTERM";
  info.version = "rpyc-registrar 0.1.0";
  const auto out = ParseCommandLine(argc, argv, info, schema);
  if (out.exit) {
    std::fprintf(out.to_stderr ? stderr : stdout, "%s%s", out.message.c_str(),
                 out.to_stderr ? "\n" : "");
    return out.exit_code;
  }
  core::registrar::Options r;
  r.transport =
      o.type == "TCP" ? core::registrar::Transport::kTcp : core::registrar::Transport::kUdp;
  if (!o.registry_host.empty()) r.registry_host = o.registry_host;
  r.registry_port = static_cast<uint16_t>(o.registry_port);
  r.bind_host = o.bind;
  r.aliases.clear();
  for (size_t start = 0; start <= o.aliases.size();) {
    size_t comma = o.aliases.find(',', start);
    if (comma == std::string::npos) comma = o.aliases.size();
    r.aliases.push_back(o.aliases.substr(start, comma - start));
    start = comma + 1;
  }
  r.port = core::brine::Value(o.port);
  r.interval = std::chrono::milliseconds(o.interval_ms);
  r.retry = std::chrono::milliseconds(o.retry_ms);
  core::daemon::RunOptions run;
  run.name = "REGCLNT";
  run.log.quiet = o.quiet;
  run.log.target = core::log::Target::kStderr;
  return core::daemon::Run(
      run, [&](core::daemon::Context& ctx) -> core::Result<std::unique_ptr<core::daemon::Service>> {
        const char* name =
            r.transport == core::registrar::Transport::kTcp ? "REGCLNT/TCP" : "REGCLNT/UDP";
        auto registrar = core::registrar::Registrar::Create(ctx.loop, r, ctx.logging.Get(name));
        if (!registrar) return core::Fail(registrar.error());
        (*registrar)->Start();
        return std::make_unique<RegistrarService>(std::move(*registrar));
      });
}
