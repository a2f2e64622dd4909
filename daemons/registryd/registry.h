#pragma once

// The registry's state, and nothing else: services (upper-case names) x servers (host, port),
// each with the time of its last REGISTER. No I/O, no clock: callers pass `now` in seconds on a
// monotonic clock, so tests drive time by hand.
//
// Semantics follow the reference (docs/protocol.md §10): names are kept in first-registration
// order; a service's servers are returned oldest registration first; a service left without servers
// disappears. Unlike the reference, the number of (service, server) entries is capped: past the
// cap, new entries are refused (refreshing an existing entry always works). So is the number of
// entries of one host (the address a REGISTER came from), so that one source cannot fill the
// registry and lock every other server out.

#include <cstddef>
#include <cstdint>
#include <list>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace registryd {

inline constexpr size_t kDefaultMaxEntries = 65536;
inline constexpr size_t kDefaultMaxEntriesPerHost = 1024;

struct Server {
  std::string host;
  std::string port;  // the brine encoding of the port value, as the server sent it
};

class Registry {
 public:
  Registry(size_t max_entries, double timeout_seconds,
           size_t max_entries_per_host = kDefaultMaxEntriesPerHost)
      : max_entries_(max_entries), max_per_host_(max_entries_per_host), timeout_(timeout_seconds) {}
  Registry(const Registry&) = delete;
  Registry& operator=(const Registry&) = delete;

  // kRefused: the registry is full; kRefusedHost: this host has max_entries_per_host entries.
  enum class AddResult { kAdded, kRefreshed, kRefused, kRefusedHost };
  // `name` must already be upper-cased.
  AddResult Register(const std::string& name, const Server& server, double now);
  // Removes `server` from every service; returns how many entries went.
  size_t Unregister(const Server& server);
  // The live servers of `name`, oldest first; drops this name's stale entries (and counts them
  // in *pruned when given), like the reference's QUERY.
  std::vector<Server> Query(const std::string& name, double now, size_t* pruned = nullptr);
  // The same without copies: appends pointers (valid until the next change) to *out and
  // returns the number of stale entries dropped.
  size_t Query(std::string_view name, double now, std::vector<const Server*>* out);
  // An encoded QUERY reply, kept per service until the service changes: registries answer far
  // more QUERYs than they see REGISTERs.
  struct CachedReply {
    std::string bytes;
    size_t dropped = 0;  // servers left out to fit max_bytes
    size_t total = 0;    // live servers
    size_t max_bytes = 0;
  };
  // QUERY through the cache: prunes like Query(), then returns the cached reply, calling
  // `encode(servers, reply)` to rebuild it only when the service changed (or max_bytes
  // differs). nullptr when the service is unknown (or pruning emptied it). The pointer is valid
  // until the next change.
  template <typename Encode>
  const CachedReply* QueryCached(std::string_view name, double now, size_t max_bytes,
                                 size_t* pruned, Encode&& encode) {
    auto found = by_name_.find(name);
    if (found == by_name_.end()) return nullptr;
    auto it = found->second;
    if (it->servers.front().stamp < now - timeout_) {
      bool erased = false;
      *pruned = PruneService(it, now, &erased);
      if (erased) return nullptr;
    }
    if (!it->reply || it->reply->max_bytes != max_bytes) {
      std::vector<const Server*> live;
      live.reserve(it->servers.size());
      for (const Entry& e : it->servers) live.push_back(&e.server);
      it->reply = std::make_unique<CachedReply>();
      it->reply->max_bytes = max_bytes;
      it->reply->total = live.size();
      encode(live, it->reply.get());
    }
    return it->reply.get();
  }

  // Every name in first-registration order, or only those with a server on `filter_host`.
  std::vector<std::string> List(std::optional<std::string_view> filter_host) const;
  // Drops every entry older than the timeout; returns how many went.
  size_t Prune(double now);

  // Changes with every change of an entry (added, refreshed, removed) or of the timeout: a reply
  // built from the registry is still right while the version is the same, until FreshUntil().
  uint64_t version() const { return version_; }
  // The time after which a QUERY of `name` would prune (its oldest server's stamp plus the
  // timeout); nullopt for an unknown name.
  std::optional<double> FreshUntil(std::string_view name) const {
    auto found = by_name_.find(name);
    if (found == by_name_.end()) return std::nullopt;
    return found->second->servers.front().stamp + timeout_;
  }

  size_t services() const { return by_name_.size(); }
  size_t entries() const { return entries_; }
  size_t max_entries() const { return max_entries_; }
  size_t max_entries_per_host() const { return max_per_host_; }
  // The number of entries registered from `host`.
  size_t entries_of(std::string_view host) const;
  double timeout() const { return timeout_; }
  void set_timeout(double seconds) {
    timeout_ = seconds;
    ++version_;
  }
  // Applies to new entries only: a host already past a lowered cap keeps its entries.
  void set_max_entries_per_host(size_t n) { max_per_host_ = n; }

 private:
  // Memory matters (the cap is reached under a flood): an entry is one list node plus one small
  // hash-index node; the index is keyed by a hash of (service, host, port) only, and lookups
  // compare the entry itself.
  struct Service;
  struct Entry {
    Server server;
    double stamp;
    Service* service;
  };
  struct Service {
    std::string name;
    std::list<Entry> servers;            // ordered by stamp, oldest first
    std::unique_ptr<CachedReply> reply;  // dropped on every change of `servers`
  };
  using EntryIt = std::list<Entry>::iterator;
  using ServiceIt = std::list<Service>::iterator;

  static uint64_t Hash(std::string_view name, const Server& s);
  std::optional<EntryIt> Find(Service& svc, const Server& server, uint64_t hash) const;
  void EraseEntry(Service& svc, EntryIt e, uint64_t hash);
  // Drops stale entries at the front of the service's list; erases the service when it
  // empties (then *erased). Returns the number dropped.
  size_t PruneService(ServiceIt it, double now, bool* erased);
  void EraseService(ServiceIt it);

  size_t max_entries_;
  size_t max_per_host_;
  double timeout_;
  size_t entries_ = 0;
  uint64_t version_ = 0;
  std::list<Service> services_;  // first-registration order
  // Keys view Service::name (list nodes never move).
  std::unordered_map<std::string_view, ServiceIt> by_name_;
  std::unordered_multimap<uint64_t, EntryIt> index_;
  std::unordered_map<std::string, size_t> per_host_;  // host -> entries (none at 0)
};

}  // namespace registryd
