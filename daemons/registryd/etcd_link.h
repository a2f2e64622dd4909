#pragma once

// The registry's link to etcd (issue 15), on the daemon's loop. Two halves:
//   Writes: every server this registry accepts (host, int port) gets one etcd lease with
//     TTL = the pruning timeout, and one key per alias under it (layout in
//     libcore/etcd/entry.h). A repeat REGISTER is a keepalive (an expired lease is granted
//     again and the keys rewritten); UNREGISTER revokes the lease. Writes go through a queue
//     that holds each server once, so repeats merge; the handler never waits on etcd. Lease
//     calls run concurrently (max_in_flight); the keys of every server whose lease is granted
//     are written together, several servers per transaction (up to etcd's 128 operations), at
//     most max_txns_in_flight transactions at a time, so keys that wait merge into the next.
//   Reads: a Mirror of the other registries' keys, from one range read and then a watch from
//     the next revision; a compacted or failed watch reads again.
// etcd unreachable (a call or the watch fails, or a probe does): the mirror is kept as last
// seen, reads are retried with a capped backoff, and when etcd answers again the mirror is read
// again and every live registration is written again. The mirror is dropped one pruning
// timeout after etcd last answered. Each transition is logged once.

#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "daemons/registryd/mirror.h"
#include "daemons/registryd/registry.h"
#include "libcore/base/result.h"
#include "libcore/daemon/loop.h"
#include "libcore/etcd/client.h"
#include "libcore/log/log.h"

namespace registryd {

struct LinkOptions {
  core::etcd::Options client;
  std::string prefix;
  std::string site;
  std::string registry_id;
  double timeout = 240;  // the pruning timeout, seconds: lease TTL, and the mirror's grace
  // Retry delays while etcd is unreachable: doubling from the first to the cap.
  std::chrono::milliseconds retry_first{250};
  std::chrono::milliseconds retry_cap{2000};
  // While up, etcd is asked this often whether it still answers (a hung member sends no
  // error); 0: a third of the timeout, between 1 and 10 s.
  std::chrono::milliseconds probe_interval{0};
  size_t max_in_flight = 64;      // concurrent lease calls (grant, keepalive)
  size_t max_txns_in_flight = 4;  // concurrent key transactions; keys wait meanwhile and merge
};

class EtcdLink {
 public:
  enum class State { kConnecting, kUp, kDown };

  // Config errors from the client (endpoints, TLS files).
  static core::Result<std::unique_ptr<EtcdLink>> Create(core::daemon::EventLoop& loop,
                                                        core::log::Logger log, LinkOptions o);
  EtcdLink(const EtcdLink&) = delete;
  EtcdLink& operator=(const EtcdLink&) = delete;
  ~EtcdLink();

  // Starts reading (returns at once).
  void Start();

  // A REGISTER of `server` under `names` (upper-cased) was answered OK. Servers whose port is
  // not an int (a unix socket path) are not shared.
  void Registered(const Server& server, const std::vector<std::string>& names, double now);
  void Unregistered(const Server& server);
  // Each second: forgets servers past the timeout, drops a mirror etcd no longer confirms.
  void Tick(double now);
  void set_timeout(double seconds) { o_.timeout = seconds; }

  const Mirror& mirror() const { return mirror_; }
  State state() const { return state_; }
  // For STATUS=: "etcd up, 12 mirrored" / "etcd unreachable, 12 mirrored kept" / ...
  std::string StatusText() const;
  size_t registrations() const { return regs_.size(); }

 private:
  using Key = std::pair<std::string, std::string>;  // host, brine port
  struct Reg {
    uint16_t port = 0;
    std::vector<std::string> names;  // every alias, in first-registration order
    size_t written = 0;              // names[0, written) are in etcd under `lease`
    int64_t lease = 0;
    double last = 0;      // time of the last REGISTER
    uint64_t gen = 0;     // tells a callback whether the Reg is still the one it worked for
    bool queued = false;  // in queue_
    bool busy = false;    // a call is in flight
    bool again = false;   // REGISTERed while busy: one more step when the call ends
  };

  EtcdLink(core::daemon::EventLoop& loop, core::log::Logger log, LinkOptions o,
           std::unique_ptr<core::etcd::Client> client);
  void ReadAll();
  void OnRange(core::Result<core::etcd::RangeReply> r);
  void OnWatch(core::Result<core::etcd::WatchUpdate> r);
  bool PutMirrored(const core::etcd::KeyValue& kv);
  void Probe();
  void SetUp();
  void SetDown(const std::string& why);
  void Enqueue(const Key& key, Reg& reg);
  void Pump();
  // One lease call for `reg` (a grant, or a keepalive once its keys are written).
  void Step(const Key& key, Reg& reg);
  // Sends the keys of the servers in writes_ (several per transaction).
  void PumpWrites();
  struct Written {  // one server's part of a transaction
    Key key;
    uint64_t gen = 0;
    size_t count = 0;  // names[0, count) were written
  };
  void OnWritten(const std::vector<Written>& items, core::Result<core::etcd::TxnReply> r);
  // The Reg a call for `key` worked for, marked not busy; nullptr when it is gone or replaced
  // (the result is stale).
  Reg* Finish(const Key& key, uint64_t gen);
  void CallEnded();
  // A failed call: etcd unreachable (link down, the Reg waits for the replay) or an answer.
  void Failed(const Key& key, Reg* reg, const core::Error& e, const char* what);
  void Revoke(int64_t lease);
  std::chrono::milliseconds ProbeInterval() const;

  core::daemon::EventLoop& loop_;
  core::log::Logger log_;
  LinkOptions o_;
  std::unique_ptr<core::etcd::Client> client_;
  Mirror mirror_;
  State state_ = State::kConnecting;
  std::unique_ptr<core::etcd::Watch> watch_;
  bool reading_ = false;
  double last_good_ = 0;  // when etcd last answered
  double down_since_ = 0;
  std::chrono::milliseconds retry_delay_;
  std::map<Key, Reg> regs_;
  std::deque<Key> queue_;   // servers waiting for a step
  std::deque<Key> writes_;  // servers whose keys wait for a transaction (still `queued`)
  size_t txns_in_flight_ = 0;
  std::vector<int64_t> revoke_later_;  // leases of servers unregistered while etcd was away
  size_t in_flight_ = 0;
  uint64_t next_gen_ = 1;
  std::set<std::string> bad_keys_;  // malformed keys already logged (bounded)
  core::log::RateLimit write_warnings_{5, 60.0};
  core::daemon::Timer retry_timer_;
  core::daemon::Timer probe_timer_;
  core::daemon::Timer pump_timer_;  // zero delay: REGISTERs of one loop turn merge
};

}  // namespace registryd
