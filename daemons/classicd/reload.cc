#include "daemons/classicd/reload.h"

#include <set>

#include "daemons/classicd/service.h"
#include "libcore/transport/exposure.h"

namespace classicd {

ReloadPlan PlanReload(const Options& running, const Options& started, const Options& after) {
  static const std::set<std::string> kLive = {"quiet",
                                              "log_level",
                                              "max_connections",
                                              "max_connections_per_peer",
                                              "max_handshakes",
                                              "idle_timeout",
                                              "frame_timeout",
                                              "max_frame_size",
                                              "tls_handshake_timeout",
                                              "ssl_keyfile",
                                              "ssl_certfile",
                                              "ssl_cafile",
                                              "ssl_crlfile",
                                              "allow_unauthenticated_remote"};
  Options running_options = running;
  const auto running_fields = MakeSchema(&running_options);
  Options started_options = started;
  const auto started_fields = MakeSchema(&started_options);
  Options now_options = after;
  const auto new_fields = MakeSchema(&now_options);
  const auto shown = [](const std::string& v) { return v.empty() ? std::string("\"\"") : v; };
  ReloadPlan plan;
  for (size_t i = 0; i < new_fields.size(); ++i) {
    const std::string& key = new_fields[i].key;
    const bool live = kLive.count(key) != 0;
    const std::string was = core::config::ValueText(live ? running_fields[i] : started_fields[i]);
    const std::string now = core::config::ValueText(new_fields[i]);
    if (was == now) continue;
    (live ? plan.applied : plan.restart).push_back(key + " " + shown(was) + " -> " + shown(now));
  }
  return plan;
}

void ClassicService::Reload() {
  auto fresh = reload_ ? reload_() : core::Result<Options>(current_);
  if (!fresh) {
    log_.Error("reload: {}; keeping the running configuration", fresh.error().message());
    return;
  }
  const Options& n = *fresh;
  ReloadPlan plan = PlanReload(current_, o_, n);
  // Compared with the options as started: the listeners were made for them.
  if (n.tls() != o_.tls()) {
    plan.restart.push_back(std::string("TLS ") + (o_.tls() ? "on" : "off") + " -> " +
                           (n.tls() ? "on" : "off"));
  }
  std::shared_ptr<core::transport::TlsContext> fresh_tls = tls();
  if (n.tls() && o_.tls()) {
    auto t = core::transport::TlsContext::Create(n.ssl_certfile, n.ssl_keyfile, n.ssl_cafile,
                                                 n.ssl_crlfile);
    if (!t) {
      log_.Error("reload: {}; keeping the loaded certificate", t.error().message());
    } else {
      fresh_tls = *t;
    }
  }
  // The exposure rule (issue 12) for the listeners as bound and the reloaded TLS and override:
  // a reload that would break it is refused whole.
  auto exposure = core::transport::CheckExposure(
      listeners_.Bound(),
      {fresh_tls && fresh_tls->verifies_clients(), n.allow_unauthenticated_remote});
  if (!exposure) {
    log_.Error("reload: {}; keeping the running configuration", exposure.error().message());
    return;
  }
  for (const auto& w : *exposure) log_.Warn("{}", w);
  if (fresh_tls != tls()) {
    {
      std::lock_guard<std::mutex> lock(tls_mu_);
      tls_ = fresh_tls;
    }
    log_.Info("reload: TLS certificate and key reloaded from {} and {}", n.ssl_certfile,
              n.ssl_keyfile);
    for (const auto& w : fresh_tls->warnings()) log_.Warn("{}", w);
  }
  limits_.Set(n);
  admission_.set_limits({n.max_connections, n.max_connections_per_peer, n.max_handshakes});
  current_ = n;
  const auto joined = [](const std::vector<std::string>& list) {
    std::string out;
    for (const auto& c : list) out += (out.empty() ? "" : ", ") + c;
    return out;
  };
  // The report is logged at the more verbose of the old and new levels, so a reload that makes
  // the log quieter says so too; the new level applies last.
  const core::log::Level level = core::log::Threshold(
      n.quiet, core::log::ParseLevel(n.log_level).value_or(core::log::Level::info));
  if (level < ctx_.logging.threshold()) ctx_.logging.SetThreshold(level);
  if (plan.applied.empty() && plan.restart.empty()) log_.Info("reload: configuration unchanged");
  if (!plan.applied.empty()) log_.Info("reload: applied {}", joined(plan.applied));
  if (!plan.restart.empty())
    log_.Warn("reload: needs a restart to apply: {}", joined(plan.restart));
  ctx_.logging.SetThreshold(level);
  // A hosted service's logger follows (forked children from the next fork on).
  FollowLogLevel();
}

}  // namespace classicd
