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
        registrations());
  }
  // Replay: every server is written again (under the current lease when that is recent
  // enough), every pending delete is sent.
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
    Reg& reg = it->second;
    if (reg.gone) {
      // Its delete waits for etcd; once its lease has run out there is nothing left to delete.
      if (!reg.busy && (reg.lease == 0 || reg.lease_sent + LeaseTtl() < now)) {
        it = regs_.erase(it);
        continue;
      }
    } else if (reg.last < now - o_.timeout) {
      // The local registry dropped it too. Its lease runs out in etcd by itself within W, unless
      // it was written again long after its last REGISTER (a replay): then delete it now.
      if (reg.lease != 0 && reg.lease_sent > reg.last + static_cast<double>(LeaseWindow())) {
        MarkGone(reg);
        Enqueue(it->first, reg);
      } else {
        it = regs_.erase(it);
        continue;
      }
    }
    ++it;
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

size_t EtcdLink::registrations() const {
  return static_cast<size_t>(
      std::count_if(regs_.begin(), regs_.end(), [](const auto& kv) { return !kv.second.gone; }));
}

int64_t EtcdLink::LeaseWindow() const {
  return std::max<int64_t>(1, static_cast<int64_t>(std::ceil(o_.timeout / 16)));
}

int64_t EtcdLink::LeaseTtl() const {
  return static_cast<int64_t>(std::ceil(o_.timeout)) + LeaseWindow();
}

bool EtcdLink::NeedsWrite(const Reg& reg) const {
  if (reg.gone) return false;
  return reg.written < reg.names.size() || reg.lease == 0 ||
         reg.lease_sent < reg.last - static_cast<double>(LeaseWindow());
}

void EtcdLink::MarkGone(Reg& reg) {
  for (auto& n : reg.names) {
    if (std::find(reg.dead.begin(), reg.dead.end(), n) == reg.dead.end()) {
      reg.dead.push_back(std::move(n));
    }
  }
  reg.names.clear();
  reg.written = 0;
  reg.gone = true;
  ++reg.epoch;
}

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
  reg.gone = false;  // registered again before its keys were deleted: the aliases not
                     // registered again are still deleted
  reg.last = now;
  for (const auto& n : names) {
    if (reg.names.size() + reg.dead.size() >= kMaxNamesShared) break;  // one transaction
    if (std::find(reg.names.begin(), reg.names.end(), n) == reg.names.end()) {
      reg.names.push_back(n);
      // A key is named once per transaction: put again, not deleted.
      reg.dead.erase(std::remove(reg.dead.begin(), reg.dead.end(), n), reg.dead.end());
    }
  }
  if (NeedsWrite(reg)) Enqueue(it->first, reg);
}

void EtcdLink::Unregistered(const Server& server) {
  auto it = regs_.find(Key{server.host, server.port});
  if (it == regs_.end()) return;
  Reg& reg = it->second;
  if (!reg.busy && reg.lease == 0 && reg.dead.empty()) {  // nothing of it reached etcd
    regs_.erase(it);
    return;
  }
  MarkGone(reg);
  Enqueue(it->first, reg);
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
  if (state_ != State::kUp) return;
  const double now = MonotonicSeconds();
  // Puts need a lease granted within the last W (its keys then live one timeout past now).
  const bool lease_ok = lease_ != 0 && lease_sent_ >= now - static_cast<double>(LeaseWindow());
  std::deque<Key> waiting;  // puts waiting for a lease (still queued)
  while (txns_in_flight_ < o_.max_txns_in_flight && !queue_.empty()) {
    std::vector<core::etcd::Put> puts;
    std::vector<std::string> deletes;
    std::vector<Written> items;
    while (!queue_.empty()) {
      auto it = regs_.find(queue_.front());
      if (it == regs_.end() || !it->second.queued) {  // forgotten, or a second entry
        queue_.pop_front();
        continue;
      }
      Reg& reg = it->second;
      const bool put = NeedsWrite(reg);
      if (put && !lease_ok) {
        waiting.push_back(it->first);
        queue_.pop_front();
        continue;
      }
      if (!put && reg.dead.empty()) {  // nothing left to do
        reg.queued = false;
        queue_.pop_front();
        continue;
      }
      const size_t ops = reg.dead.size() + (put ? reg.names.size() : 0);
      if (!items.empty() && puts.size() + deletes.size() + ops > kMaxNamesShared) break;
      queue_.pop_front();
      reg.queued = false;
      reg.busy = true;
      reg.again = false;
      core::etcd::Entry e;
      e.host = it->first.first;
      e.port = reg.port;
      e.aliases = reg.names;
      e.site = o_.site;
      e.registry_id = o_.registry_id;
      for (const auto& n : reg.dead) {
        e.name = n;
        if (auto k = core::etcd::EntryKey(o_.prefix, e)) deletes.push_back(std::move(*k));
      }
      if (put) {
        const std::string value = core::etcd::EntryValue(e);
        for (const auto& n : reg.names) {
          e.name = n;
          if (auto k = core::etcd::EntryKey(o_.prefix, e)) puts.push_back({*k, value, lease_});
        }
      }
      items.push_back({it->first, reg.gen, reg.epoch, put ? reg.names.size() : 0, reg.dead, lease_,
                       lease_sent_});
    }
    if (items.empty()) break;
    ++txns_in_flight_;
    client_->Write(std::move(puts), std::move(deletes),
                   [this, items = std::move(items)](core::Result<core::etcd::TxnReply> r) {
                     OnWritten(items, std::move(r));
                   });
  }
  if (!waiting.empty()) {
    queue_.insert(queue_.begin(), waiting.begin(), waiting.end());
    Grant();
  }
}

void EtcdLink::Grant() {
  if (granting_) return;
  granting_ = true;
  const double sent = MonotonicSeconds();
  client_->LeaseGrant(std::chrono::seconds(LeaseTtl()),
                      [this, sent](core::Result<core::etcd::LeaseReply> r) {
                        granting_ = false;
                        if (!r) {
                          WriteFailed(r.error(), "granting a lease");
                          return;
                        }
                        lease_ = r->id;
                        lease_sent_ = sent;
                        if (state_ == State::kUp && !queue_.empty() && !pump_timer_.pending()) {
                          pump_timer_.Start({});
                        }
                      });
}

void EtcdLink::OnWritten(const std::vector<Written>& items, core::Result<core::etcd::TxnReply> r) {
  --txns_in_flight_;
  // The transaction's lease expired meanwhile (a long outage, a wiped etcd): nothing of it was
  // written; a new lease is granted and the servers are written again.
  const bool lease_gone =
      !r && Answered(r.error()) && r.error().message().find("lease not found") != std::string::npos;
  if (lease_gone && !items.empty() && items.front().lease == lease_) lease_ = 0;
  if (!r && !lease_gone) WriteFailed(r.error(), "writing the keys");
  for (const auto& item : items) {
    Reg* reg = Finish(item.key, item.gen);
    if (reg == nullptr) continue;
    if (!r) {
      // Answered otherwise (a refused transaction): dropped, as logged. Unreachable: the
      // replay writes it when etcd answers again.
      if (lease_gone) Enqueue(item.key, *reg);
      continue;
    }
    // Unregistered meanwhile: what was written is among `dead` now, and `names` (registered
    // again since, perhaps) is still to be written.
    if (item.puts > 0 && reg->epoch == item.epoch) {
      reg->written = std::max(reg->written, item.puts);
      reg->lease = item.lease;
      reg->lease_sent = item.lease_sent;
    }
    for (const auto& n : item.dead) {
      reg->dead.erase(std::remove(reg->dead.begin(), reg->dead.end(), n), reg->dead.end());
    }
    if (reg->gone && reg->dead.empty()) {
      regs_.erase(item.key);  // unregistered, and its keys are deleted
      continue;
    }
    if (reg->again || NeedsWrite(*reg) || !reg->dead.empty()) Enqueue(item.key, *reg);
  }
  if (state_ == State::kUp && !queue_.empty() && !pump_timer_.pending()) pump_timer_.Start({});
}

EtcdLink::Reg* EtcdLink::Finish(const Key& key, uint64_t gen) {
  auto it = regs_.find(key);
  if (it == regs_.end() || it->second.gen != gen) return nullptr;
  it->second.busy = false;
  return &it->second;
}

void EtcdLink::WriteFailed(const core::Error& e, const std::string& what) {
  if (Answered(e)) {
    if (write_warnings_.Allow(MonotonicSeconds())) {
      log_.Warn("etcd: {} failed: {}", what, core::log::Escape(e.message()));
    }
    return;
  }
  // Left for the replay when etcd answers again.
  if (state_ == State::kUp) SetDown(e.message());
}

}  // namespace registryd
