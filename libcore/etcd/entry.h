#pragma once

// The registry's records in etcd (issue 15). One key per (service name, server, registry):
//   <prefix>/svc/<NAME>/<host>:<port>/<registry-id>
// with a small JSON value
//   {"host":"10.0.0.5","port":18812,"aliases":["CALCULATOR","CALC"],"site":"lab",
//    "registry-id":"reg-a"}
// A server with several aliases has one key per alias, all with the same value, all under the
// registry's lease. NAME is a component as the registry stores it (rpyc upper-cases aliases);
// host is an address or host name (an IPv6 address keeps its colons: the port is after the
// last one). Keys and values come from other registries, so decoding checks everything and a
// bad record gives an error naming its key.

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "libcore/base/result.h"

namespace core::etcd {

struct Entry {
  std::string name;  // the alias this key is filed under
  std::string host;
  uint16_t port = 0;
  std::vector<std::string> aliases;  // every alias of the server
  std::string site;                  // may be empty
  std::string registry_id;
};

// "<prefix>/svc/": every entry; "<prefix>/svc/<name>/": the servers of one name.
std::string ServicesPrefix(std::string_view prefix);
std::string NamePrefix(std::string_view prefix, std::string_view name);

// The key and value to write; Usage errors when a component would break the layout (empty, a
// '/' in name, host or registry id, port 0).
Result<std::string> EntryKey(std::string_view prefix, const Entry& entry);
std::string EntryValue(const Entry& entry);

// Parses a key read under ServicesPrefix(prefix) and its value; the key's components must match
// the value's host, port and registry id, and the name must be one of its aliases.
Result<Entry> DecodeEntry(std::string_view prefix, std::string_view key, std::string_view value);

}  // namespace core::etcd
