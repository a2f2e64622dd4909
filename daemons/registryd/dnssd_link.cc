#include "daemons/registryd/dnssd_link.h"

#include <algorithm>
#include <cerrno>
#include <csignal>

#include <pthread.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "daemons/registryd/request.h"
#include "libcore/daemon/loop.h"

namespace registryd {
namespace {

// avahi-daemon refuses an entry group of more than entries-per-entry-group-max (32) entries;
// the address record and the service are two of them, each subtype one more.
constexpr size_t kMaxAliases = 30;
// Warnings of the publishing thread waiting for the registry's loop (more are counted).
constexpr size_t kMaxQueuedWarnings = 64;

}  // namespace

core::Result<std::unique_ptr<DnssdLink>> DnssdLink::Create(core::log::Logger log, DnssdOptions o) {
  core::UniqueFd wake(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!wake) return core::Fail(core::Error::Io("dnssd: eventfd: " + core::ErrnoText(errno)));
  auto shared = std::make_shared<Shared>(std::move(wake));
  const auto retry = o.retry;
  std::unique_ptr<DnssdLink> link(new DnssdLink(std::move(log), std::move(o), shared));
  try {
    link->thread_ = std::thread([shared, retry] { Run(shared, retry); });
  } catch (const std::system_error& e) {
    return core::Fail(core::Error::Io(std::string("dnssd: cannot start its thread: ") + e.what()));
  }
  return link;
}

DnssdLink::DnssdLink(core::log::Logger log, DnssdOptions o, std::shared_ptr<Shared> shared)
    : log_(std::move(log)), o_(std::move(o)), shared_(std::move(shared)) {}

DnssdLink::~DnssdLink() {
  if (!thread_.joinable()) return;
  std::unique_lock<std::mutex> lock(shared_->mu);
  shared_->stop = true;
  shared_->Wake();
  if (shared_->ended_cv.wait_for(lock, kStopWait, [this] { return shared_->ended; })) {
    lock.unlock();
    thread_.join();
    return;
  }
  lock.unlock();
  log_.Warn(
      "dnssd: avahi-daemon does not answer; leaving without withdrawing the services "
      "(avahi-daemon drops them when this process is gone)");
  thread_.detach();  // it holds `shared_`, and nothing else of this object
}

void DnssdLink::Shared::Wake() const {
  const uint64_t one = 1;
  (void)!::write(wake.get(), &one, sizeof one);  // never blocks (EFD_NONBLOCK)
}

core::dnssd::Service DnssdLink::MakeService(const Key& key, const Published& p) const {
  core::dnssd::Service s;
  s.name = p.names.front() + " on " + HostPort(key.first, std::to_string(IntPort(key.second)));
  s.host = key.first;
  s.port = IntPort(key.second);
  s.aliases = p.names;
  s.site = o_.site;
  return s;
}

void DnssdLink::Registered(const Server& server, const std::vector<std::string>& names,
                           double now) {
  if (names.empty()) return;
  auto [it, added] = servers_.try_emplace(Key{server.host, server.port});
  if (added && IntPort(server.port) == 0) {  // a unix socket path: not a network service
    servers_.erase(it);
    return;
  }
  Published& p = it->second;
  p.last = now;
  bool changed = added;
  for (const auto& n : names) {
    if (p.names.size() >= kMaxAliases) break;
    if (std::find(p.names.begin(), p.names.end(), n) == p.names.end()) {
      p.names.push_back(n);
      changed = true;
    }
  }
  // A new server, or one more name (the service is published again with every name).
  if (changed) Post(it->first, MakeService(it->first, p));
}

void DnssdLink::Unregistered(const Server& server) {
  auto it = servers_.find(Key{server.host, server.port});
  if (it == servers_.end()) return;
  Post(it->first, std::nullopt);
  servers_.erase(it);
}

void DnssdLink::Tick(double now) {
  for (auto it = servers_.begin(); it != servers_.end();) {
    if (it->second.last < now - o_.timeout) {  // the registry pruned it too
      Post(it->first, std::nullopt);
      it = servers_.erase(it);
    } else {
      ++it;
    }
  }
  std::vector<std::string> warnings;
  uint64_t dropped = 0;
  {
    std::lock_guard<std::mutex> lock(shared_->mu);
    warnings.swap(shared_->warnings);
    dropped = std::exchange(shared_->warnings_dropped, 0);
  }
  for (const auto& w : warnings) {
    if (!warnings_.Allow(now)) continue;
    const uint64_t more = warnings_.TakeSuppressed() + std::exchange(dropped, 0);
    if (more > 0) {
      log_.Warn("{} ({} more dnssd warning(s) suppressed)", w, more);
    } else {
      log_.Warn("{}", w);
    }
  }
  const bool connected = shared_->connected.load();
  if (connected && !was_connected_) {
    log_.Info("dnssd: publishing through avahi-daemon ({} server{})", servers_.size(),
              servers_.size() == 1 ? "" : "s");
  }
  was_connected_ = connected;
}

std::string DnssdLink::StatusText() const {
  const std::string n = std::to_string(servers_.size());
  return shared_->connected.load() ? "avahi up, " + n + " published"
                                   : "avahi unreachable, " + n + " to publish";
}

void DnssdLink::Post(const Key& key, std::optional<core::dnssd::Service> service) {
  std::lock_guard<std::mutex> lock(shared_->mu);
  // A non-empty queue has its wake-up written already (the thread empties it when it wakes).
  const bool wake = shared_->pending.empty();
  shared_->pending[key] = std::move(service);
  if (wake) shared_->Wake();
}

void DnssdLink::Run(const std::shared_ptr<Shared>& shared, std::chrono::milliseconds retry) {
  // Signals are the registry loop's business.
  sigset_t all;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, nullptr);
  Shared& sh = *shared;
  const auto push_warning = [&sh](std::string w) {
    std::lock_guard<std::mutex> lock(sh.mu);
    if (sh.warnings.size() < kMaxQueuedWarnings) {
      sh.warnings.push_back(std::move(w));
    } else {
      ++sh.warnings_dropped;
    }
  };
  const auto end = [&sh] {
    std::lock_guard<std::mutex> lock(sh.mu);
    sh.ended = true;
    sh.ended_cv.notify_all();
  };
  auto loop = core::daemon::EventLoop::Create();
  if (!loop) {
    push_warning("dnssd: no event loop for publishing: " + loop.error().message());
    end();
    return;
  }
  core::dnssd::Publisher::Options po;
  po.retry = retry;
  auto publisher = core::dnssd::Publisher::Create(
      *loop, [&](const core::Error& e) { push_warning(e.message()); }, po);
  std::map<Key, uint64_t> ids;
  const auto apply = [&] {
    std::map<Key, std::optional<core::dnssd::Service>> work;
    bool stop = false;
    {
      std::lock_guard<std::mutex> lock(sh.mu);
      work.swap(sh.pending);
      stop = sh.stop;
    }
    if (stop) {
      loop->Break();
      return;
    }
    for (auto& [key, service] : work) {
      if (auto id = ids.find(key); id != ids.end()) {
        publisher->Withdraw(id->second);
        ids.erase(id);
      }
      if (!service) continue;
      auto id = publisher->Publish(std::move(*service));
      if (id) {
        ids.emplace(key, *id);
      } else {
        push_warning(id.error().message());
      }
    }
  };
  core::daemon::IoWatch wake(*loop, sh.wake.get(), EV_READ, true, [&](short) {
    uint64_t n = 0;
    (void)!::read(sh.wake.get(), &n, sizeof n);
    apply();
  });
  wake.Start();
  core::daemon::Timer state(*loop, [&] { sh.connected.store(publisher->connected()); });
  state.Start(std::chrono::milliseconds(200), true);
  apply();
  (void)loop->Run();
  sh.connected.store(false);
  // Freeing the client drops its entry groups: avahi-daemon sends their goodbyes.
  publisher.reset();
  end();
}

}  // namespace registryd
