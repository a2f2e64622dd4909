#pragma once

// Publishing the registry's servers as DNS-SD services through avahi-daemon (issue 15,
// `dnssd = true`), with core::dnssd::Publisher. One service per registered server (host, int
// port): instance "<FIRST NAME> on <host>:<port>", type _rpyc._tcp, one subtype per name
// (_calculator._sub._rpyc._tcp), TXT aliases= and site=, and an address record pointing at the
// server's host. Withdrawn when the server is unregistered or pruned.
//
// Only this registry's own registrations are published, not the ones mirrored from etcd: mDNS
// is link-local, and a server registered here is on this registry's link (its address is the
// REGISTER's source), while a mirrored one is on another LAN, maybe unreachable from this one;
// several registries of one LAN sharing an etcd would otherwise each publish every server.
//
// libavahi-client's calls are synchronous D-Bus round trips (a hung avahi-daemon holds each one
// up to D-Bus's timeout), so the Publisher runs on a thread of its own with its own event loop.
// The registry's loop only records what to publish (merged per server) and wakes that thread
// through an eventfd: a reply never waits on Avahi. The thread's warnings (Avahi absent or
// stopped: one per outage; name collisions, renamed "NAME #2") are logged by the registry's
// loop at the next Tick(), which also logs when avahi-daemon is reached again.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "daemons/registryd/registry.h"
#include "libcore/base/result.h"
#include "libcore/base/unique_fd.h"
#include "libcore/dnssd/publisher.h"
#include "libcore/log/log.h"

namespace registryd {

struct DnssdOptions {
  std::string site;                       // TXT site= (when set)
  double timeout = 240;                   // the pruning timeout, seconds
  std::chrono::milliseconds retry{5000};  // reconnecting to a missing avahi-daemon
};

class DnssdLink {
 public:
  static constexpr std::chrono::milliseconds kStopWait{1000};

  // Starts the publishing thread; an error only when the thread or its eventfd cannot be made.
  static core::Result<std::unique_ptr<DnssdLink>> Create(core::log::Logger log, DnssdOptions o);
  DnssdLink(const DnssdLink&) = delete;
  DnssdLink& operator=(const DnssdLink&) = delete;
  // Stops the thread, which withdraws every service (goodbye packets) on its way out; a thread
  // held up by a hung avahi-daemon is waited for kStopWait, then left behind (avahi-daemon drops
  // the services when this process's bus connection closes).
  ~DnssdLink();

  // A REGISTER of `server` under `names` (upper-cased) was answered OK. Servers whose port is
  // not an int (a unix socket path) and hosts that are not addresses are not published.
  void Registered(const Server& server, const std::vector<std::string>& names, double now);
  void Unregistered(const Server& server);
  // Each second: withdraws servers past the timeout; logs the publishing thread's warnings.
  void Tick(double now);
  void set_timeout(double seconds) { o_.timeout = seconds; }

  // For STATUS=: "dnssd 3 published" / "dnssd: avahi-daemon unreachable".
  std::string StatusText() const;
  size_t servers() const { return servers_.size(); }

 private:
  using Key = std::pair<std::string, std::string>;  // host, brine port
  struct Published {
    std::vector<std::string> names;
    double last = 0;  // time of the last REGISTER
  };

  // What the registry's loop and the publishing thread share. The thread holds it too, so that
  // a thread stuck in a call to a hung avahi-daemon can be left behind at shutdown.
  struct Shared {
    explicit Shared(core::UniqueFd fd) : wake(std::move(fd)) {}
    core::UniqueFd wake;  // an eventfd: work for the thread
    std::atomic<bool> connected{false};
    std::mutex mu;
    std::condition_variable ended_cv;
    // Guarded by mu: per server its latest desired state (merged: only the last one counts),
    // the thread's warnings not yet logged, the stop request, the thread's end.
    std::map<Key, std::optional<core::dnssd::Service>> pending;
    std::vector<std::string> warnings;
    uint64_t warnings_dropped = 0;
    bool stop = false;
    bool ended = false;
    void Wake() const;
  };

  DnssdLink(core::log::Logger log, DnssdOptions o, std::shared_ptr<Shared> shared);
  // Registry loop: hands the desired state of `key` (a service, or nothing) to the thread.
  void Post(const Key& key, std::optional<core::dnssd::Service> service);
  core::dnssd::Service MakeService(const Key& key, const Published& p) const;
  // The publishing thread.
  static void Run(const std::shared_ptr<Shared>& shared, std::chrono::milliseconds retry);

  core::log::Logger log_;
  DnssdOptions o_;
  std::map<Key, Published> servers_;  // registry loop only
  core::log::RateLimit warnings_{10, 60.0};
  bool was_connected_ = false;
  std::shared_ptr<Shared> shared_;
  std::thread thread_;
};

}  // namespace registryd
