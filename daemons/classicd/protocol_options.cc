// The [protocol] table and --protocol KEY=VALUE: rpyc's protocol_config keys, by their rpyc names,
// for a hosted service (objspace/protocol_config.h holds them with rpyc's defaults).

#include <charconv>
#include <cmath>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "daemons/classicd/classicd.h"

namespace classicd {

using core::Error;
using core::Fail;
using core::config::Entry;
using objspace::ProtocolConfig;

namespace {

enum class Type { kBool, kText, kList, kSeconds };

struct Key {
  const char* name;
  Type type;
  bool ProtocolConfig::*flag = nullptr;
  std::string ProtocolConfig::*text = nullptr;
};

const Key kKeys[] = {
    {"allow_safe_attrs", Type::kBool, &ProtocolConfig::allow_safe_attrs},
    {"safe_attrs", Type::kList},
    {"allow_exposed_attrs", Type::kBool, &ProtocolConfig::allow_exposed_attrs},
    {"exposed_prefix", Type::kText, nullptr, &ProtocolConfig::exposed_prefix},
    {"allow_public_attrs", Type::kBool, &ProtocolConfig::allow_public_attrs},
    {"allow_all_attrs", Type::kBool, &ProtocolConfig::allow_all_attrs},
    {"allow_getattr", Type::kBool, &ProtocolConfig::allow_getattr},
    {"allow_setattr", Type::kBool, &ProtocolConfig::allow_setattr},
    {"allow_delattr", Type::kBool, &ProtocolConfig::allow_delattr},
    {"allow_pickle", Type::kBool, &ProtocolConfig::allow_pickle},
    {"include_local_traceback", Type::kBool, &ProtocolConfig::include_local_traceback},
    {"include_local_version", Type::kBool, &ProtocolConfig::include_local_version},
    {"import_custom_exceptions", Type::kBool, &ProtocolConfig::import_custom_exceptions},
    {"instantiate_custom_exceptions", Type::kBool, &ProtocolConfig::instantiate_custom_exceptions},
    {"instantiate_oldstyle_exceptions", Type::kBool,
     &ProtocolConfig::instantiate_oldstyle_exceptions},
    {"propagate_SystemExit_locally", Type::kBool, &ProtocolConfig::propagate_SystemExit_locally},
    {"propagate_KeyboardInterrupt_locally", Type::kBool,
     &ProtocolConfig::propagate_KeyboardInterrupt_locally},
    {"sync_request_timeout", Type::kSeconds},
};

const char* TypeText(Type t) {
  switch (t) {
    case Type::kBool:
      return "a boolean";
    case Type::kText:
      return "a string";
    case Type::kList:
      return "an array of strings";
    case Type::kSeconds:
      return "a number of seconds or \"none\"";
  }
  return "";
}

std::optional<bool> BoolWord(std::string_view t) {
  std::string w(t);
  for (char& c : w) c = static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
  if (w == "true" || w == "yes" || w == "on" || w == "1") return true;
  if (w == "false" || w == "no" || w == "off" || w == "0") return false;
  return std::nullopt;
}

std::vector<std::string> SplitCommas(const std::string& text) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= text.size()) {
    size_t end = text.find(',', start);
    if (end == std::string::npos) end = text.size();
    if (end > start) out.push_back(text.substr(start, end - start));
    start = end + 1;
  }
  return out;
}

// Sets one key; an empty string on success, else what is wrong with the value.
std::string Apply(const Key& k, const Entry& e, ProtocolConfig* c) {
  const auto* text = std::get_if<std::string>(&e.value);
  switch (k.type) {
    case Type::kBool: {
      std::optional<bool> v;
      if (const auto* b = std::get_if<bool>(&e.value)) v = *b;
      if (e.from_text && text != nullptr) v = BoolWord(*text);
      if (!v) return "";  // wrong type: the caller says so
      c->*k.flag = *v;
      return "ok";
    }
    case Type::kText:
      if (text == nullptr) return "";
      c->*k.text = *text;
      return "ok";
    case Type::kList:
      if (const auto* l = std::get_if<std::vector<std::string>>(&e.value)) {
        c->safe_attrs = *l;
        return "ok";
      }
      if (e.from_text && text != nullptr) {  // --protocol safe_attrs=__add__,__len__
        c->safe_attrs = SplitCommas(*text);
        return "ok";
      }
      return "";
    case Type::kSeconds: {
      std::optional<double> v;
      if (const auto* i = std::get_if<int64_t>(&e.value)) v = static_cast<double>(*i);
      if (const auto* d = std::get_if<double>(&e.value)) v = *d;
      if (text != nullptr) {
        if (*text == "none" || *text == "None") {
          c->sync_request_timeout = std::nullopt;
          return "ok";
        }
        if (e.from_text) {
          double d = 0;
          auto [p, ec] = std::from_chars(text->data(), text->data() + text->size(), d);
          if (ec == std::errc() && p == text->data() + text->size()) v = d;
        }
      }
      if (!v) return "";
      if (!std::isfinite(*v) || *v <= 0 || *v > 86400.0 * 365) {
        return "must be more than 0 and at most a year of seconds (or \"none\")";
      }
      c->sync_request_timeout = *v;
      return "ok";
    }
  }
  return "";
}

}  // namespace

Entry::Value ProtocolTomlValue(const Entry& e) {
  const auto* text = std::get_if<std::string>(&e.value);
  if (!e.from_text || text == nullptr) return e.value;
  for (const Key& k : kKeys) {
    if (e.key != k.name) continue;
    switch (k.type) {
      case Type::kBool:
        if (auto b = BoolWord(*text)) return *b;
        break;
      case Type::kList:
        return SplitCommas(*text);
      case Type::kSeconds: {
        double d = 0;
        auto [p, ec] = std::from_chars(text->data(), text->data() + text->size(), d);
        if (ec == std::errc() && p == text->data() + text->size()) return d;
        break;
      }
      case Type::kText:
        break;
    }
  }
  return e.value;
}

core::Result<ProtocolConfig> ParseProtocol(const std::vector<Entry>& entries) {
  ProtocolConfig c;
  for (const Entry& e : entries) {
    // From the file: FILE:LINE and exit 78; from the command line: the switch and exit 64.
    auto broken = [&e](const std::string& what) {
      const std::string text = e.where + ": key 'protocol." + e.key + "': " + what;
      return Fail(e.from_text ? Error::Usage(text) : Error::Config(text));
    };
    const Key* key = nullptr;
    for (const Key& k : kKeys) {
      if (e.key == k.name) key = &k;
    }
    if (key == nullptr) {
      return broken("unknown key (rpyc's protocol_config keys: see rpyc-classicd.toml(5))");
    }
    const std::string r = Apply(*key, e, &c);
    if (r.empty()) return broken(std::string("expected ") + TypeText(key->type));
    if (r != "ok") return broken(r);
  }
  return c;
}

}  // namespace classicd
