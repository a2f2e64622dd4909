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
  by_key_.insert_or_assign(key, std::move(item));
  return true;
}

bool Mirror::Delete(std::string_view key) {
  auto it = by_key_.find(key);
  if (it == by_key_.end()) return false;
  by_key_.erase(it);
  return true;
}

bool Mirror::Has(std::string_view name) const {
  const std::string first = core::etcd::NamePrefix(prefix_, name);
  auto it = by_key_.lower_bound(first);
  return it != by_key_.end() && it->first.starts_with(first);
}

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
