#include "daemons/registryd/etcd_link.h"

#include <algorithm>
#include <cmath>

#include "daemons/registryd/request.h"
#include "libcore/etcd/entry.h"

namespace registryd {
namespace {

using core::daemon::MonotonicSeconds;

// etcd refuses a transaction of more operations than --max-txn-ops (128 by default).
constexpr size_t kMaxNamesShared = 128;
constexpr size_t kMaxBadKeysRemembered = 1024;

// An error etcd itself answered (HTTP 4xx: a dead lease, a refused transaction) rather than a
// failure to reach it (the link is then down).
bool Answered(const core::Error& e) {
  return e.code() == core::Error::Code::kProtocol &&
         e.message().find(": HTTP 4") != std::string::npos;
}

}  // namespace

core::Result<std::unique_ptr<EtcdLink>> EtcdLink::Create(core::daemon::EventLoop& loop,
                                                         core::log::Logger log, LinkOptions o) {
  auto client = core::etcd::Client::Create(loop, o.client);
  if (!client) return core::Fail(client.error());
  return std::unique_ptr<EtcdLink>(
      new EtcdLink(loop, std::move(log), std::move(o), std::move(*client)));
}

EtcdLink::EtcdLink(core::daemon::EventLoop& loop, core::log::Logger log, LinkOptions o,
                   std::unique_ptr<core::etcd::Client> client)
    : loop_(loop),
      log_(std::move(log)),
      o_(std::move(o)),
      client_(std::move(client)),
      mirror_(o_.prefix, o_.registry_id, o_.site),
      retry_delay_(o_.retry_first),
      retry_timer_(loop, [this] { ReadAll(); }),
      probe_timer_(loop, [this] { Probe(); }),
      pump_timer_(loop, [this] { Pump(); }) {}

EtcdLink::~EtcdLink() = default;

void EtcdLink::Start() {
  log_.Info("etcd: sharing registrations at {} as registry '{}' (site '{}', keys under {})",
            client_->current_endpoint(), core::log::Escape(o_.registry_id),
            core::log::Escape(o_.site), core::log::Escape(core::etcd::ServicesPrefix(o_.prefix)));
  ReadAll();
}

std::chrono::milliseconds EtcdLink::ProbeInterval() const {
  if (o_.probe_interval.count() > 0) return o_.probe_interval;
  const double s = std::clamp(o_.timeout / 3, 1.0, 10.0);
  return std::chrono::milliseconds(static_cast<int64_t>(s * 1000));
}

// ---- reads ----

void EtcdLink::ReadAll() {
  if (reading_) return;
  reading_ = true;
  watch_.reset();
  const std::string prefix = core::etcd::ServicesPrefix(o_.prefix);
  client_->Range(prefix, core::etcd::PrefixEnd(prefix),
                 [this](core::Result<core::etcd::RangeReply> r) { OnRange(std::move(r)); });
}

bool EtcdLink::PutMirrored(const core::etcd::KeyValue& kv) {
  auto put = mirror_.Put(kv.key, kv.value);
  if (put) return true;
  mirror_.Delete(kv.key);  // a good entry overwritten with a bad one is gone
  if (bad_keys_.size() < kMaxBadKeysRemembered && bad_keys_.insert(kv.key).second) {
    log_.Warn("etcd: skipping a malformed entry: {}", core::log::Escape(put.error().message()));
  }
  return false;
}

void EtcdLink::OnRange(core::Result<core::etcd::RangeReply> r) {
  reading_ = false;
  if (!r) {
    SetDown(r.error().message());
    return;
  }
  mirror_.Clear();
  for (const auto& kv : r->kvs) PutMirrored(kv);
  last_good_ = MonotonicSeconds();
  const std::string prefix = core::etcd::ServicesPrefix(o_.prefix);
  watch_ = client_->StartWatch(
      prefix, core::etcd::PrefixEnd(prefix), r->revision + 1, false,
      [this](core::Result<core::etcd::WatchUpdate> u) { OnWatch(std::move(u)); });
  const bool was_up = state_ == State::kUp;
  SetUp();
  if (was_up) {
    log_.Debug("etcd: read {} entries again (revision {})", mirror_.entries(), r->revision);
  }
}

void EtcdLink::OnWatch(core::Result<core::etcd::WatchUpdate> u) {
  if (!u) {
    // The stream ended or failed: read again shortly (not in a tight loop should the watch
    // keep failing); the read tells whether etcd is there.
    log_.Debug("etcd: watch ended: {}", u.error().message());
    watch_.reset();
    if (!retry_timer_.pending()) retry_timer_.Start(o_.retry_first);
    return;
  }
  last_good_ = MonotonicSeconds();
  if (u->compacted() || u->canceled) {
    log_.Info("etcd: watch {} (revision {}); reading the entries again",
              u->compacted() ? "compacted" : "canceled", u->compact_revision);
    ReadAll();
    return;
  }
  for (const auto& ev : u->events) {
    if (ev.type == core::etcd::WatchEvent::Type::kPut) {
      PutMirrored(ev.kv);
    } else {
      mirror_.Delete(ev.kv.key);
    }
  }
}

void EtcdLink::Probe() {
  if (state_ != State::kUp) return;
  // One key that does not exist: the cheapest read that proves a member answers.
  client_->Range(o_.prefix + "/probe", "", [this](core::Result<core::etcd::RangeReply> r) {
    if (state_ != State::kUp) return;
    if (!r) {
      SetDown(r.error().message());
      return;
    }
    last_good_ = MonotonicSeconds();
    probe_timer_.Start(ProbeInterval());
  });
}

// ---- transitions ----

void EtcdLink::SetUp() {
  retry_delay_ = o_.retry_first;
  retry_timer_.Stop();
  probe_timer_.Start(ProbeInterval());
  if (state_ == State::kUp) return;
  const State before = state_;
  state_ = State::kUp;
  if (before == State::kConnecting) {
    log_.Info("etcd: connected to {}: {} entries of other registries mirrored",
              client_->current_endpoint(), mirror_.entries());
  } else {
    log_.Info(
        "etcd: reachable again at {} after {:.0f} s: {} entries mirrored; writing {} "
        "registration(s) again",
        client_->current_endpoint(), MonotonicSeconds() - down_since_, mirror_.entries(),
        regs_.size());
  }
  for (int64_t lease : revoke_later_) Revoke(lease);
  revoke_later_.clear();
  // Replay: every server is written again (under its lease when that is still alive).
  for (auto& [key, reg] : regs_) {
    reg.written = 0;
    Enqueue(key, reg);
  }
  if (!queue_.empty() && !pump_timer_.pending()) pump_timer_.Start({});
}

void EtcdLink::SetDown(const std::string& why) {
  watch_.reset();
  probe_timer_.Stop();
  if (state_ != State::kDown) {
    const State before = state_;
    state_ = State::kDown;
    down_since_ = MonotonicSeconds();
    if (before == State::kConnecting) last_good_ = down_since_;  // nothing mirrored yet
    log_.Warn(
        "etcd: unreachable ({}); answering from the local table and {} mirrored entries, "
        "retrying",
        core::log::Escape(why), mirror_.entries());
  } else {
    log_.Debug("etcd: still unreachable: {}", core::log::Escape(why));
  }
  if (!retry_timer_.pending() && !reading_) {
    retry_timer_.Start(retry_delay_);
    retry_delay_ = std::min(retry_delay_ * 2, o_.retry_cap);
  }
}

void EtcdLink::Tick(double now) {
  for (auto it = regs_.begin(); it != regs_.end();) {
    // The local registry dropped it too; its lease runs out in etcd by itself.
    if (it->second.last < now - o_.timeout) {
      it = regs_.erase(it);
    } else {
      ++it;
    }
  }
  if (state_ != State::kUp && mirror_.entries() > 0 && last_good_ < now - o_.timeout) {
    log_.Warn("etcd: dropping {} mirrored entries, not confirmed for {:.0f} s", mirror_.entries(),
              now - last_good_);
    mirror_.Clear();
  }
}

std::string EtcdLink::StatusText() const {
  const std::string mirrored = std::to_string(mirror_.entries()) + " mirrored";
  switch (state_) {
    case State::kConnecting:
      return "etcd connecting";
    case State::kUp:
      return "etcd up, " + mirrored;
    case State::kDown:
      return "etcd unreachable, " + mirrored + " kept";
  }
  return {};
}

// ---- writes ----

void EtcdLink::Registered(const Server& server, const std::vector<std::string>& names, double now) {
  const uint16_t port = IntPort(server.port);
  if (port == 0) return;  // a unix socket path means nothing to another host
  Key key{server.host, server.port};
  auto [it, added] = regs_.try_emplace(key);
  Reg& reg = it->second;
  if (added) {
    reg.port = port;
    reg.gen = next_gen_++;
  }
  reg.last = now;
  for (const auto& n : names) {
    if (reg.names.size() >= kMaxNamesShared) break;
    if (std::find(reg.names.begin(), reg.names.end(), n) == reg.names.end()) {
      reg.names.push_back(n);
    }
  }
  Enqueue(it->first, reg);
}

void EtcdLink::Unregistered(const Server& server) {
  auto it = regs_.find(Key{server.host, server.port});
  if (it == regs_.end()) return;
  // A grant in flight finds its Reg gone and revokes the lease it got.
  if (it->second.lease != 0) Revoke(it->second.lease);
  regs_.erase(it);
}

void EtcdLink::Revoke(int64_t lease) {
  if (state_ != State::kUp) {
    revoke_later_.push_back(lease);
    return;
  }
  client_->LeaseRevoke(lease, [this, lease](core::Status st) {
    if (st || Answered(st.error())) return;  // revoked, or already gone
    revoke_later_.push_back(lease);
    SetDown(st.error().message());
  });
}

void EtcdLink::Enqueue(const Key& key, Reg& reg) {
  if (reg.busy) {
    reg.again = true;
    return;
  }
  if (reg.queued) return;  // repeats merge
  reg.queued = true;
  queue_.push_back(key);
  if (state_ == State::kUp && !pump_timer_.pending()) pump_timer_.Start({});
}

void EtcdLink::Pump() {
  while (state_ == State::kUp && in_flight_ < o_.max_in_flight && !queue_.empty()) {
    Key key = std::move(queue_.front());
    queue_.pop_front();
    auto it = regs_.find(key);
    if (it == regs_.end() || !it->second.queued) continue;
    it->second.queued = false;
    Step(it->first, it->second);
  }
}

EtcdLink::Reg* EtcdLink::Finish(const Key& key, uint64_t gen) {
  --in_flight_;
  if (state_ == State::kUp && !queue_.empty() && !pump_timer_.pending()) pump_timer_.Start({});
  auto it = regs_.find(key);
  if (it == regs_.end() || it->second.gen != gen) return nullptr;
  it->second.busy = false;
  return &it->second;
}

void EtcdLink::Failed(const Key& key, Reg* reg, const core::Error& e, const char* what) {
  if (Answered(e)) {
    const double now = MonotonicSeconds();
    if (write_warnings_.Allow(now)) {
      log_.Warn("etcd: {} for {} failed: {}", what, HostPort(key.first, std::to_string(reg->port)),
                core::log::Escape(e.message()));
    }
    return;
  }
  // Left for the replay when etcd answers again.
  if (state_ == State::kUp) SetDown(e.message());
}

void EtcdLink::Step(const Key& key, Reg& reg) {
  reg.busy = true;
  reg.again = false;
  ++in_flight_;
  const uint64_t gen = reg.gen;
  if (reg.lease == 0) {
    client_->LeaseGrant(std::chrono::seconds(static_cast<int64_t>(std::ceil(o_.timeout))),
                        [this, key, gen](core::Result<core::etcd::LeaseReply> r) {
                          Reg* done = Finish(key, gen);
                          if (done == nullptr) {  // unregistered or forgotten meanwhile
                            if (r) Revoke(r->id);
                            return;
                          }
                          if (!r) {
                            Failed(key, done, r.error(), "granting a lease");
                            return;
                          }
                          done->lease = r->id;
                          done->written = 0;
                          Enqueue(key, *done);  // next step: the keys
                        });
    return;
  }
  if (reg.written < reg.names.size()) {
    std::vector<std::pair<std::string, std::string>> kvs;
    core::etcd::Entry e;
    e.host = key.first;
    e.port = reg.port;
    e.aliases = reg.names;
    e.site = o_.site;
    e.registry_id = o_.registry_id;
    const std::string value = core::etcd::EntryValue(e);
    for (const auto& n : reg.names) {
      e.name = n;
      if (auto k = core::etcd::EntryKey(o_.prefix, e)) kvs.emplace_back(std::move(*k), value);
    }
    const size_t count = reg.names.size();
    client_->PutAll(std::move(kvs), reg.lease,
                    [this, key, gen, count](core::Result<core::etcd::TxnReply> r) {
                      Reg* done = Finish(key, gen);
                      if (done == nullptr) return;
                      if (!r) {
                        if (Answered(r.error()) &&
                            r.error().message().find("lease not found") != std::string::npos) {
                          done->lease = 0;  // expired meanwhile: grant again, then write
                          Enqueue(key, *done);
                          return;
                        }
                        Failed(key, done, r.error(), "writing the keys");
                        return;
                      }
                      done->written = std::max(done->written, count);
                      if (done->again || done->written < done->names.size()) Enqueue(key, *done);
                    });
    return;
  }
  client_->LeaseKeepAlive(reg.lease, [this, key, gen](core::Result<core::etcd::KeepAliveReply> r) {
    Reg* done = Finish(key, gen);
    if (done == nullptr) return;
    if (!r) {
      Failed(key, done, r.error(), "keeping the lease alive");
      return;
    }
    if (r->expired()) {  // etcd answered without a TTL: grant again and write the keys again
      done->lease = 0;
      done->written = 0;
      Enqueue(key, *done);
      return;
    }
    if (done->again) Enqueue(key, *done);
  });
}

}  // namespace registryd
