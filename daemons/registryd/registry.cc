#include "daemons/registryd/registry.h"

#include <functional>

namespace registryd {

uint64_t Registry::Hash(std::string_view name, const Server& s) {
  const std::hash<std::string_view> h;
  uint64_t v = h(name);
  v ^= h(s.host) + 0x9e3779b97f4a7c15ULL + (v << 6) + (v >> 2);
  v ^= h(s.port) + 0x9e3779b97f4a7c15ULL + (v << 6) + (v >> 2);
  return v;
}

std::optional<Registry::EntryIt> Registry::Find(Service& svc, const Server& server,
                                                uint64_t hash) const {
  auto [first, last] = index_.equal_range(hash);
  for (auto i = first; i != last; ++i) {
    const Entry& e = *i->second;
    if (e.service == &svc && e.server.host == server.host && e.server.port == server.port) {
      return i->second;
    }
  }
  return std::nullopt;
}

void Registry::EraseEntry(Service& svc, EntryIt e, uint64_t hash) {
  auto [first, last] = index_.equal_range(hash);
  for (auto i = first; i != last; ++i) {
    if (i->second == e) {
      index_.erase(i);
      break;
    }
  }
  if (auto h = per_host_.find(e->server.host); h != per_host_.end() && --h->second == 0) {
    per_host_.erase(h);
  }
  svc.servers.erase(e);
  svc.reply.reset();
  --entries_;
  ++version_;
}

Registry::AddResult Registry::Register(const std::string& name, const Server& server, double now) {
  auto found = by_name_.find(name);
  const uint64_t hash = Hash(name, server);
  if (found != by_name_.end()) {
    Service& svc = *found->second;
    if (auto e = Find(svc, server, hash)) {
      (*e)->stamp = now;
      svc.reply.reset();
      ++version_;
      svc.servers.splice(svc.servers.end(), svc.servers, *e);  // keep stamp order
      return AddResult::kRefreshed;
    }
  }
  if (entries_ >= max_entries_) return AddResult::kRefused;
  size_t& of_host = per_host_[server.host];
  if (of_host >= max_per_host_) return AddResult::kRefusedHost;
  ++of_host;
  if (found == by_name_.end()) {
    services_.push_back(Service{name, {}, nullptr});
    auto it = std::prev(services_.end());
    found = by_name_.emplace(std::string_view(it->name), it).first;
  }
  Service& svc = *found->second;
  svc.servers.push_back(Entry{server, now, &svc});
  svc.reply.reset();
  index_.emplace(hash, std::prev(svc.servers.end()));
  ++entries_;
  ++version_;
  return AddResult::kAdded;
}

size_t Registry::entries_of(std::string_view host) const {
  auto it = per_host_.find(std::string(host));
  return it == per_host_.end() ? 0 : it->second;
}

void Registry::EraseService(ServiceIt it) {
  while (!it->servers.empty()) {
    EraseEntry(*it, it->servers.begin(), Hash(it->name, it->servers.front().server));
  }
  by_name_.erase(std::string_view(it->name));
  services_.erase(it);
}

size_t Registry::Unregister(const Server& server) {
  size_t removed = 0;
  for (auto it = services_.begin(); it != services_.end();) {
    auto next = std::next(it);
    const uint64_t hash = Hash(it->name, server);
    if (auto e = Find(*it, server, hash)) {
      EraseEntry(*it, *e, hash);
      ++removed;
      if (it->servers.empty()) EraseService(it);
    }
    it = next;
  }
  return removed;
}

size_t Registry::PruneService(ServiceIt it, double now, bool* erased) {
  const double oldest = now - timeout_;
  size_t dropped = 0;
  auto& servers = it->servers;
  while (!servers.empty() && servers.front().stamp < oldest) {
    EraseEntry(*it, servers.begin(), Hash(it->name, servers.front().server));
    ++dropped;
  }
  *erased = servers.empty();
  if (*erased) EraseService(it);
  return dropped;
}

size_t Registry::Query(std::string_view name, double now, std::vector<const Server*>* out) {
  auto found = by_name_.find(name);
  if (found == by_name_.end()) return 0;
  auto it = found->second;
  size_t dropped = 0;
  if (it->servers.front().stamp < now - timeout_) {  // a service always has a server
    bool erased = false;
    dropped = PruneService(it, now, &erased);
    if (erased) return dropped;
  }
  for (const Entry& e : it->servers) out->push_back(&e.server);
  return dropped;
}

std::vector<Server> Registry::Query(const std::string& name, double now, size_t* pruned) {
  std::vector<const Server*> live;
  const size_t dropped = Query(std::string_view(name), now, &live);
  if (pruned != nullptr) *pruned = dropped;
  std::vector<Server> out;
  out.reserve(live.size());
  for (const Server* s : live) out.push_back(*s);
  return out;
}

std::vector<std::string> Registry::List(std::optional<std::string_view> filter_host) const {
  std::vector<std::string> out;
  for (const Service& svc : services_) {
    if (filter_host) {
      bool match = false;
      for (const Entry& e : svc.servers) {
        if (e.server.host == *filter_host) {
          match = true;
          break;
        }
      }
      if (!match) continue;
    }
    out.push_back(svc.name);
  }
  return out;
}

size_t Registry::Prune(double now) {
  size_t dropped = 0;
  for (auto it = services_.begin(); it != services_.end();) {
    auto next = std::next(it);
    bool erased = false;
    dropped += PruneService(it, now, &erased);
    it = next;
  }
  return dropped;
}

}  // namespace registryd
