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
  std::unique_ptr<DnssdLink> link(new DnssdLink(std::move(log), std::move(o), std::move(wake)));
  try {
    link->thread_ = std::thread([raw = link.get()] { raw->Run(); });
  } catch (const std::system_error& e) {
    return core::Fail(core::Error::Io(std::string("dnssd: cannot start its thread: ") + e.what()));
  }
  return link;
}

DnssdLink::DnssdLink(core::log::Logger log, DnssdOptions o, core::UniqueFd wake)
    : log_(std::move(log)), o_(std::move(o)), wake_(std::move(wake)) {}

DnssdLink::~DnssdLink() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  const uint64_t one = 1;
  (void)!::write(wake_.get(), &one, sizeof one);
  if (thread_.joinable()) thread_.join();
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
  if (names.empty() || IntPort(server.port) == 0) return;  // a unix socket path: not a service
  Key key{server.host, server.port};
  auto [it, added] = servers_.try_emplace(std::move(key));
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
    std::lock_guard<std::mutex> lock(mu_);
    warnings.swap(thread_warnings_);
    dropped = warnings_dropped_;
    warnings_dropped_ = 0;
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
  const bool connected = connected_.load();
  if (connected && !was_connected_) {
    log_.Info("dnssd: publishing through avahi-daemon ({} server{})", servers_.size(),
              servers_.size() == 1 ? "" : "s");
  }
  was_connected_ = connected;
}

std::string DnssdLink::StatusText() const {
  const std::string n = std::to_string(servers_.size());
  return connected_.load() ? "avahi up, " + n + " published"
                           : "avahi unreachable, " + n + " to publish";
}

void DnssdLink::Post(const Key& key, std::optional<core::dnssd::Service> service) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    pending_[key] = std::move(service);
  }
  const uint64_t one = 1;
  (void)!::write(wake_.get(), &one, sizeof one);  // never blocks (EFD_NONBLOCK)
}

void DnssdLink::Run() {
  // Signals are the registry loop's business.
  sigset_t all;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, nullptr);
  const auto push_warning = [this](std::string w) {
    std::lock_guard<std::mutex> lock(mu_);
    if (thread_warnings_.size() < kMaxQueuedWarnings) {
      thread_warnings_.push_back(std::move(w));
    } else {
      ++warnings_dropped_;
    }
  };
  auto loop = core::daemon::EventLoop::Create();
  if (!loop) {
    push_warning("dnssd: no event loop for publishing: " + loop.error().message());
    return;
  }
  core::dnssd::Publisher::Options po;
  po.retry = o_.retry;
  auto publisher = core::dnssd::Publisher::Create(
      *loop, [&](const core::Error& e) { push_warning(e.message()); }, po);
  std::map<Key, uint64_t> ids;
  const auto apply = [&] {
    std::map<Key, std::optional<core::dnssd::Service>> work;
    bool stop = false;
    {
      std::lock_guard<std::mutex> lock(mu_);
      work.swap(pending_);
      stop = stop_;
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
  core::daemon::IoWatch wake(*loop, wake_.get(), EV_READ, true, [&](short) {
    uint64_t n = 0;
    (void)!::read(wake_.get(), &n, sizeof n);
    apply();
  });
  wake.Start();
  core::daemon::Timer state(*loop, [&] { connected_.store(publisher->connected()); });
  state.Start(std::chrono::milliseconds(200), true);
  apply();
  (void)loop->Run();
  connected_.store(false);
  // Freeing the client drops its entry groups: avahi-daemon sends their goodbyes.
  publisher.reset();
}

}  // namespace registryd
