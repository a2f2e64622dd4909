#include "daemons/registryd/mirror.h"

#include "libcore/brine/brine.h"

namespace registryd {

core::Result<bool> Mirror::Put(const std::string& key, std::string_view value) {
  auto entry = core::etcd::DecodeEntry(prefix_, key, value);
  if (!entry) return core::Fail(entry.error());
  if (entry->registry_id == own_id_) return false;
  Item item{std::move(entry->name),
            Server{std::move(entry->host), core::brine::Dump(core::brine::Int(entry->port))},
            entry->site == site_};
  // try_emplace leaves `item` alone when the key is there (then only the value changed: the
  // key names the entry's name).
  auto [it, added] = by_key_.try_emplace(key, std::move(item));
  if (added) {
    ++names_[it->second.name];
  } else {
    Item& old = it->second;
    // The same entry written again (another registry's keepalive, a rewrite under a newer
    // lease): replies built from the mirror stay valid.
    if (old.server.host == item.server.host && old.server.port == item.server.port &&
        old.same_site == item.same_site) {
      return true;
    }
    old = std::move(item);
  }
  ++version_;
  return true;
}

bool Mirror::Delete(std::string_view key) {
  auto it = by_key_.find(key);
  if (it == by_key_.end()) return false;
  Forget(it->second.name);
  by_key_.erase(it);
  ++version_;
  return true;
}

void Mirror::Forget(const std::string& name) {
  auto n = names_.find(name);
  if (n != names_.end() && --n->second == 0) names_.erase(n);
}

bool Mirror::Has(std::string_view name) const { return names_.find(name) != names_.end(); }

void Mirror::Servers(std::string_view name, std::vector<const Server*>* out) const {
  const std::string first = core::etcd::NamePrefix(prefix_, name);
  const size_t start = out->size();
  const auto seen = [&](const Server& s) {
    for (size_t i = start; i < out->size(); ++i) {
      if ((*out)[i]->host == s.host && (*out)[i]->port == s.port) return true;
    }
    return false;
  };
  for (const bool same_site : {true, false}) {
    for (auto it = by_key_.lower_bound(first); it != by_key_.end(); ++it) {
      if (!it->first.starts_with(first)) break;
      const Item& item = it->second;
      if (item.same_site == same_site && !seen(item.server)) out->push_back(&item.server);
    }
  }
}

std::vector<std::string> Mirror::Names(std::optional<std::string_view> host) const {
  std::vector<std::string> out;
  for (const auto& [key, item] : by_key_) {
    if (host && item.server.host != *host) continue;
    if (out.empty() || out.back() != item.name) out.push_back(item.name);
  }
  return out;
}

}  // namespace registryd
