#pragma once

// The registry's link to etcd (issue 15), on the daemon's loop. Two halves:
//   Writes: every server this registry accepts (host, int port) has one key per alias (layout
//     in libcore/etcd/entry.h), under a lease this registry shares between the servers it
//     writes within one lease window W (the pruning timeout / 16, at least 1 s): the lease's
//     TTL is the timeout + W and it is never kept alive, so a server's keys live at least one
//     timeout after its last REGISTER and at most W longer. A repeat REGISTER costs nothing
//     while the server's lease was granted less than W before it; later, the keys are written
//     again under the current lease (that is the keepalive). UNREGISTER deletes the keys. So
//     etcd's lease expiry prunes a server that stops registering (and every server of a
//     registry that died), and a new server costs a share of a transaction instead of a lease
//     grant each (etcd spends ~250 us of CPU per grant through the gateway: the grant rate
//     capped REGISTERs at ~2,000/s). Writes go through a queue that holds each server once,
//     so repeats merge; the handler never waits on etcd. The keys of many servers go in one
//     transaction (up to etcd's 128 operations), at most max_txns_in_flight at a time, so
//     keys that wait merge into the next. The per-server ordering (a delete after a put, a
//     put after a delete) holds because a server has at most one transaction in flight.
//   Reads: a Mirror of the other registries' keys, from one range read and then a watch from
//     the next revision; a compacted or failed watch reads again.
// etcd unreachable (a call or the watch fails, or a probe does): the mirror is kept as last
// seen, reads are retried with a capped backoff, and when etcd answers again the mirror is read
// again and every live registration is written again (and every pending delete sent). The
// mirror is dropped one pruning timeout after etcd last answered. Each transition is logged
// once.

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
  size_t registrations() const;
  // The shared leases' window W and TTL (the timeout + W), seconds.
  int64_t LeaseWindow() const;
  int64_t LeaseTtl() const;

 private:
  using Key = std::pair<std::string, std::string>;  // host, brine port
  struct Reg {
    uint16_t port = 0;
    std::vector<std::string> names;  // every alias, in first-registration order
    std::vector<std::string> dead;   // aliases whose keys are to be deleted
    size_t written = 0;              // names[0, written) are in etcd under `lease`
    int64_t lease = 0;               // the shared lease of the written keys (0: none yet)
    double lease_sent = 0;           // when its grant was asked: the keys live past this + TTL
    double last = 0;                 // time of the last REGISTER
    uint64_t gen = 0;     // tells a callback whether the Reg is still the one it worked for
    uint64_t epoch = 0;   // counts UNREGISTERs: `names` was emptied and may have been refilled
    bool queued = false;  // in queue_
    bool busy = false;    // a transaction is in flight
    bool again = false;   // changed while busy: looked at again when the transaction ends
    bool gone = false;    // unregistered: forgotten once its keys are deleted
  };
  struct Written {  // one server's part of a transaction
    Key key;
    uint64_t gen = 0;
    uint64_t epoch = 0;             // of `names` when they were written
    size_t puts = 0;                // names[0, puts) were written
    std::vector<std::string> dead;  // these were deleted
    int64_t lease = 0;
    double lease_sent = 0;
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
  // Its keys must be written (again): new aliases, or its lease ends too early.
  bool NeedsWrite(const Reg& reg) const;
  void MarkGone(Reg& reg);
  void Enqueue(const Key& key, Reg& reg);
  // Sends the queued servers' puts and deletes, several servers per transaction; puts wait for
  // a current lease (granted here, one grant at a time).
  void Pump();
  void Grant();
  void OnWritten(const std::vector<Written>& items, core::Result<core::etcd::TxnReply> r);
  // The Reg a call for `key` worked for, marked not busy; nullptr when it is gone or replaced
  // (the result is stale).
  Reg* Finish(const Key& key, uint64_t gen);
  // A failed write or grant: etcd unreachable (the link goes down; the replay writes again) or
  // an answer (logged, rate-limited).
  void WriteFailed(const core::Error& e, const std::string& what);
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
  std::deque<Key> queue_;  // servers whose keys wait for a transaction
  size_t txns_in_flight_ = 0;
  int64_t lease_ = 0;      // the current shared lease (0: none)
  double lease_sent_ = 0;  // when its grant was asked
  bool granting_ = false;
  uint64_t next_gen_ = 1;
  std::set<std::string> bad_keys_;  // malformed keys already logged (bounded)
  core::log::RateLimit write_warnings_{5, 60.0};
  core::daemon::Timer retry_timer_;
  core::daemon::Timer probe_timer_;
  core::daemon::Timer pump_timer_;  // zero delay: REGISTERs of one loop turn merge
};

}  // namespace registryd
