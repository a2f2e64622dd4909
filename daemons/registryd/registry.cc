#include "daemons/registryd/registry.h"

namespace registryd {

std::string Registry::Key(const Server& s) {
  std::string key;
  key.reserve(s.host.size() + 1 + s.port.size());
  key += s.host;
  key += '\0';
  key += s.port;
  return key;
}

Registry::AddResult Registry::Register(const std::string& name, const Server& server, double now) {
  auto found = by_name_.find(name);
  std::string key = Key(server);
  if (found != by_name_.end()) {
    Service& svc = *found->second;
    auto e = svc.index.find(key);
    if (e != svc.index.end()) {
      e->second->stamp = now;
      svc.servers.splice(svc.servers.end(), svc.servers, e->second);  // keep stamp order
      return AddResult::kRefreshed;
    }
  }
  if (entries_ >= max_entries_) return AddResult::kRefused;
  if (found == by_name_.end()) {
    services_.push_back(Service{name, {}, {}});
    found = by_name_.emplace(name, std::prev(services_.end())).first;
  }
  Service& svc = *found->second;
  svc.servers.push_back(Entry{server, now});
  svc.index.emplace(std::move(key), std::prev(svc.servers.end()));
  ++entries_;
  return AddResult::kAdded;
}

void Registry::EraseService(std::list<Service>::iterator it) {
  entries_ -= it->servers.size();
  by_name_.erase(it->name);
  services_.erase(it);
}

size_t Registry::Unregister(const Server& server) {
  const std::string key = Key(server);
  size_t removed = 0;
  for (auto it = services_.begin(); it != services_.end();) {
    auto next = std::next(it);
    auto e = it->index.find(key);
    if (e != it->index.end()) {
      it->servers.erase(e->second);
      it->index.erase(e);
      --entries_;
      ++removed;
      if (it->servers.empty()) EraseService(it);
    }
    it = next;
  }
  return removed;
}

size_t Registry::PruneService(std::list<Service>::iterator it, double now, bool* erased) {
  const double oldest = now - timeout_;
  size_t dropped = 0;
  auto& servers = it->servers;
  while (!servers.empty() && servers.front().stamp < oldest) {
    it->index.erase(Key(servers.front().server));
    servers.pop_front();
    --entries_;
    ++dropped;
  }
  *erased = servers.empty();
  if (*erased) EraseService(it);
  return dropped;
}

std::vector<Server> Registry::Query(const std::string& name, double now, size_t* pruned) {
  std::vector<Server> out;
  auto found = by_name_.find(name);
  if (found == by_name_.end()) return out;
  bool erased = false;
  const size_t dropped = PruneService(found->second, now, &erased);
  if (pruned != nullptr) *pruned = dropped;
  if (erased) return out;
  out.reserve(found->second->servers.size());
  for (const Entry& e : found->second->servers) out.push_back(e.server);
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
