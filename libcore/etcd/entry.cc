#include "libcore/etcd/entry.h"

#include <charconv>

#include <nlohmann/json.hpp>

namespace core::etcd {

namespace {

using nlohmann::json;

bool ValidComponent(std::string_view s) {
  return !s.empty() && s.find('/') == std::string_view::npos &&
         s.find('\0') == std::string_view::npos;
}

std::string Printable(std::string_view s) {
  std::string out;
  for (char c : s.substr(0, 300)) {
    auto u = static_cast<unsigned char>(c);
    out.push_back(u >= 0x20 && u < 0x7f ? c : '?');
  }
  return out;
}

Error Bad(std::string_view key, std::string_view why) {
  return Error::Protocol("etcd entry " + Printable(key) + ": " + std::string(why));
}

}  // namespace

std::string ServicesPrefix(std::string_view prefix) { return std::string(prefix) + "/svc/"; }

std::string NamePrefix(std::string_view prefix, std::string_view name) {
  return ServicesPrefix(prefix) + std::string(name) + "/";
}

Result<std::string> EntryKey(std::string_view prefix, const Entry& entry) {
  if (!ValidComponent(entry.name) || !ValidComponent(entry.host) ||
      !ValidComponent(entry.registry_id) || entry.port == 0) {
    return Fail(Error::Usage("etcd entry needs a name, host, port and registry id without '/': " +
                             Printable(entry.name) + " " + Printable(entry.host) + ":" +
                             std::to_string(entry.port) + " " + Printable(entry.registry_id)));
  }
  return NamePrefix(prefix, entry.name) + entry.host + ":" + std::to_string(entry.port) + "/" +
         entry.registry_id;
}

std::string EntryValue(const Entry& entry) {
  return json{{"host", entry.host},
              {"port", entry.port},
              {"aliases", entry.aliases},
              {"site", entry.site},
              {"registry-id", entry.registry_id}}
      .dump();
}

Result<Entry> DecodeEntry(std::string_view prefix, std::string_view key, std::string_view value) {
  auto services = ServicesPrefix(prefix);
  if (key.substr(0, services.size()) != services) return Fail(Bad(key, "not under " + services));
  auto rest = key.substr(services.size());
  auto slash1 = rest.find('/');
  auto slash2 = slash1 == std::string_view::npos ? slash1 : rest.find('/', slash1 + 1);
  if (slash2 == std::string_view::npos || rest.find('/', slash2 + 1) != std::string_view::npos) {
    return Fail(Bad(key, "not <prefix>/svc/<name>/<host>:<port>/<registry-id>"));
  }
  Entry e;
  e.name = std::string(rest.substr(0, slash1));
  auto hostport = rest.substr(slash1 + 1, slash2 - slash1 - 1);
  auto id = rest.substr(slash2 + 1);
  auto colon = hostport.rfind(':');
  if (e.name.empty() || id.empty() || colon == std::string_view::npos || colon == 0) {
    return Fail(Bad(key, "not <prefix>/svc/<name>/<host>:<port>/<registry-id>"));
  }
  auto port_text = hostport.substr(colon + 1);
  unsigned port = 0;
  auto [end, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (ec != std::errc() || end != port_text.data() + port_text.size() || port == 0 ||
      port > 65535) {
    return Fail(Bad(key, "bad port in key"));
  }

  json j = json::parse(value, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    return Fail(Bad(key, "value is not a JSON object: " + Printable(value)));
  }
  try {
    const auto& host = j.at("host");
    const auto& jport = j.at("port");
    const auto& aliases = j.at("aliases");
    const auto& jid = j.at("registry-id");
    if (!host.is_string() || !jport.is_number_unsigned() || !aliases.is_array() ||
        !jid.is_string() || (j.contains("site") && !j["site"].is_string())) {
      return Fail(Bad(key, "value has a field of the wrong type: " + Printable(value)));
    }
    e.host = host.get<std::string>();
    if (jport.get<uint64_t>() != port) return Fail(Bad(key, "value's port differs from the key's"));
    e.port = static_cast<uint16_t>(port);
    e.registry_id = jid.get<std::string>();
    e.site = j.value("site", std::string());
    for (const auto& a : aliases) {
      if (!a.is_string() || a.get_ref<const std::string&>().empty()) {
        return Fail(Bad(key, "value has an alias that is not a non-empty string"));
      }
      e.aliases.push_back(a.get<std::string>());
    }
  } catch (const json::exception& ex) {
    return Fail(Bad(key, std::string("value lacks a field (") + ex.what() + ")"));
  }
  if (e.host != hostport.substr(0, colon)) return Fail(Bad(key, "value's host differs"));
  if (e.registry_id != id) return Fail(Bad(key, "value's registry-id differs"));
  bool named = false;
  for (const auto& a : e.aliases) named = named || a == e.name;
  if (!named) return Fail(Bad(key, "name is not among the value's aliases"));
  return e;
}

}  // namespace core::etcd
