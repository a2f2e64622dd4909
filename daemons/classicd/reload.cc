#include "daemons/classicd/reload.h"

#include <set>

#include "daemons/classicd/service.h"
#include "libcore/transport/exposure.h"

namespace classicd {

ReloadPlan PlanReload(const Options& before, const Options& after) {
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
  Options was_options = before;
  const auto old_fields = MakeSchema(&was_options);
  Options now_options = after;
  const auto new_fields = MakeSchema(&now_options);
  ReloadPlan plan;
  for (size_t i = 0; i < old_fields.size(); ++i) {
    const std::string was = core::config::ValueText(old_fields[i]);
    const std::string now = core::config::ValueText(new_fields[i]);
    if (was == now) continue;
    const std::string& key = old_fields[i].key;
    if (kLive.count(key) != 0) {
      plan.applied.push_back(key + "=" + now);
    } else {
      plan.restart.push_back(key);
    }
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
  ReloadPlan plan = PlanReload(current_, n);
  // Compared with the options as started: the listeners were made for them.
  if (n.tls() != o_.tls()) plan.restart.emplace_back("TLS on/off");
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
  std::string applied;
  for (const auto& c : plan.applied) applied += (applied.empty() ? "" : " ") + c;
  log_.Info("reload: configuration applied{}{}", applied.empty() ? "" : ": ", applied);
  for (const auto& key : plan.restart) {
    log_.Warn("reload: '{}' changed; it takes effect only after a restart", key);
  }
  // Last: the lines above are logged at the old level.
  ctx_.logging.SetThreshold(core::log::Threshold(
      n.quiet, core::log::ParseLevel(n.log_level).value_or(core::log::Level::info)));
}

}  // namespace classicd
