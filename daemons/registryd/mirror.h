#pragma once

// The mirror of what other registries share through etcd (issue 15): the entries read under
// <prefix>/svc/ (core::etcd::Entry), kept by their etcd key, so that QUERY and LIST are answered
// from memory. Pure state: no I/O, no clock. The caller fills it from a range read (Replace)
// and keeps it current from the watch (Put, Delete); this registry's own entries are not
// mirrored (they are in the local Registry).
//
// Keys sort by name (<prefix>/svc/<NAME>/...), so the servers of one name are one run of keys.

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "daemons/registryd/registry.h"
#include "libcore/etcd/entry.h"

namespace registryd {

class Mirror {
 public:
  // `prefix` as in etcd-prefix; entries of `own_registry_id` are skipped; `site` comes first.
  Mirror(std::string prefix, std::string own_registry_id, std::string site)
      : prefix_(std::move(prefix)), own_id_(std::move(own_registry_id)), site_(std::move(site)) {}
  Mirror(const Mirror&) = delete;
  Mirror& operator=(const Mirror&) = delete;

  // Decodes a key and value read under ServicesPrefix(prefix). False for this registry's own
  // entries (skipped); a Protocol error (naming the key) for a malformed one.
  core::Result<bool> Put(const std::string& key, std::string_view value);
  // True when the key was mirrored.
  bool Delete(std::string_view key);
  void Clear() {
    by_key_.clear();
    names_.clear();
    ++version_;
  }
  // Changes with every change: a reply built from the mirror is right while it is the same.
  uint64_t version() const { return version_; }

  bool Has(std::string_view name) const;
  // Appends the servers of `name` to *out: this site's first, then the others' (each run in key
  // order), without repeating a (host, port). Pointers stay valid until the next change.
  void Servers(std::string_view name, std::vector<const Server*>* out) const;
  // Every mirrored name, sorted, or only those with a server on `host`.
  std::vector<std::string> Names(std::optional<std::string_view> host) const;

  size_t entries() const { return by_key_.size(); }
  const std::string& prefix() const { return prefix_; }

 private:
  struct Item {
    std::string name;
    Server server;  // the port as brine encodes the int, as local servers keep it
    bool same_site;
  };
  void Forget(const std::string& name);

  std::string prefix_;
  std::string own_id_;
  std::string site_;
  std::map<std::string, Item, std::less<>> by_key_;
  // Keys per name: Has() is asked on every QUERY, and looks up without building a key.
  std::map<std::string, size_t, std::less<>> names_;
  uint64_t version_ = 0;
};

}  // namespace registryd
