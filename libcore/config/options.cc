#include "libcore/config/options.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <map>
#include <utility>

namespace core::config {
namespace {

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

// The long switch a key is spelled as: TOML keys may use '_' where switches use '-'.
std::string SwitchName(const Field& f) {
  std::string name = "--" + f.key;
  for (char& c : name) c = c == '_' ? '-' : c;
  return name;
}

template <typename T>
Field Make(std::string key, std::string switches, std::string help, Kind kind, T* target) {
  Field f;
  f.key = std::move(key);
  f.switches = std::move(switches);
  f.help = std::move(help);
  f.kind = kind;
  f.target = target;
  return f;
}

}  // namespace

Field Flag(std::string key, std::string switches, std::string help, bool* target) {
  return Make(std::move(key), std::move(switches), std::move(help), Kind::kBool, target);
}

Field Int(std::string key, std::string switches, std::string help, int64_t* target, int64_t min,
          int64_t max) {
  Field f = Make(std::move(key), std::move(switches), std::move(help), Kind::kInt, target);
  f.min = min;
  f.max = max;
  return f;
}

Field String(std::string key, std::string switches, std::string help, std::string* target) {
  return Make(std::move(key), std::move(switches), std::move(help), Kind::kString, target);
}

Field Choice(std::string key, std::string switches, std::string help, std::string* target,
             std::vector<std::string> choices) {
  Field f = Make(std::move(key), std::move(switches), std::move(help), Kind::kChoice, target);
  f.choices = std::move(choices);
  return f;
}

Field Entries(std::string key, std::string switches, std::string help, std::vector<Entry>* target) {
  return Make(std::move(key), std::move(switches), std::move(help), Kind::kEntries, target);
}

Field List(std::string key, std::string switches, std::string help,
           std::vector<std::string>* target) {
  return Make(std::move(key), std::move(switches), std::move(help), Kind::kList, target);
}

Field Unset(Field field, std::string text) {
  field.unset_text = std::move(text);
  return field;
}

std::string Expected(const Field& field) {
  switch (field.kind) {
    case Kind::kBool:
      return "a boolean (true/false/yes/no/on/off/1/0)";
    case Kind::kInt:
      return "a number " + std::to_string(field.min) + "-" + std::to_string(field.max);
    case Kind::kString:
      return "a string";
    case Kind::kChoice: {
      std::string all;
      for (const auto& c : field.choices) all += (all.empty() ? "" : ", ") + c;
      return "one of " + all;
    }
    case Kind::kEntries:
      return "KEY=VALUE";
    case Kind::kList:
      return "a list of strings";
  }
  return {};
}

Status SetFromText(const Field& field, std::string_view text) {
  const auto bad = [&] {
    return Fail(Error::Usage(SwitchName(field) + ": expected " + Expected(field) + ", got '" +
                             std::string(text) + "'"));
  };
  switch (field.kind) {
    case Kind::kBool: {
      const std::string t = Lower(text);
      bool v;
      if (t == "true" || t == "yes" || t == "on" || t == "1") {
        v = true;
      } else if (t == "false" || t == "no" || t == "off" || t == "0") {
        v = false;
      } else {
        return bad();
      }
      *std::get<bool*>(field.target) = v;
      return {};
    }
    case Kind::kInt: {
      int64_t v = 0;
      const char* end = text.data() + text.size();
      auto [p, ec] = std::from_chars(text.data(), end, v);
      if (text.empty() || ec != std::errc() || p != end || v < field.min || v > field.max) {
        return bad();
      }
      *std::get<int64_t*>(field.target) = v;
      return {};
    }
    case Kind::kString:
      *std::get<std::string*>(field.target) = std::string(text);
      return {};
    case Kind::kChoice: {
      const std::string t = Lower(text);
      for (const auto& c : field.choices) {
        if (Lower(c) == t) {
          *std::get<std::string*>(field.target) = c;
          return {};
        }
      }
      return bad();
    }
    case Kind::kEntries: {
      const size_t eq = text.find('=');
      if (eq == std::string_view::npos || eq == 0) return bad();
      Entry e;
      e.key = std::string(text.substr(0, eq));
      e.value = std::string(text.substr(eq + 1));
      e.from_text = true;
      e.where = SwitchName(field);
      std::get<std::vector<Entry>*>(field.target)->push_back(std::move(e));
      return {};
    }
    case Kind::kList: {
      std::vector<std::string> items;
      for (std::string_view rest = text;;) {
        const size_t comma = rest.find(',');
        const std::string_view item = rest.substr(0, comma);
        if (item.empty()) return bad();
        items.emplace_back(item);
        if (comma == std::string_view::npos) break;
        rest.remove_prefix(comma + 1);
      }
      auto* list = std::get<std::vector<std::string>*>(field.target);
      list->insert(list->end(), items.begin(), items.end());
      return {};
    }
  }
  return Fail(Error::Usage(SwitchName(field) + ": unsupported option kind"));
}

std::string ValueText(const Field& field) {
  switch (field.kind) {
    case Kind::kBool:
      return *std::get<bool*>(field.target) ? "true" : "false";
    case Kind::kInt:
      return std::to_string(*std::get<int64_t*>(field.target));
    case Kind::kString:
    case Kind::kChoice:
      return *std::get<std::string*>(field.target);
    case Kind::kEntries:
      return "";
    case Kind::kList: {
      std::string out;
      for (const auto& item : *std::get<std::vector<std::string>*>(field.target)) {
        out += (out.empty() ? "" : ",") + item;
      }
      return out;
    }
  }
  return {};
}

namespace {

// A TOML basic string, escaped.
std::string TomlString(std::string_view text) {
  std::string out = "\"";
  for (const char c : text) {
    const auto u = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (u < 0x20 || u == 0x7f) {
      static constexpr char kHex[] = "0123456789abcdef";
      out += "\\u00";
      out += kHex[u >> 4];
      out += kHex[u & 15];
    } else {
      out += c;
    }
  }
  return out + "\"";
}

// A key of a table: bare when it can be, else quoted.
std::string TomlKey(std::string_view key) {
  const bool bare = !key.empty() && std::all_of(key.begin(), key.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '-';
  });
  return bare ? std::string(key) : TomlString(key);
}

std::string TomlEntryValue(const Entry::Value& value) {
  struct Visit {
    std::string operator()(bool b) const { return b ? "true" : "false"; }
    std::string operator()(int64_t i) const { return std::to_string(i); }
    std::string operator()(double d) const {
      if (std::isnan(d)) return "nan";
      if (std::isinf(d)) return d > 0 ? "inf" : "-inf";
      char buf[64];
      auto [end, ec] = std::to_chars(buf, buf + sizeof buf, d);
      std::string out(buf, ec == std::errc() ? end : buf);
      // The shortest form of 3.0 is "3", which TOML reads as an integer.
      if (out.find_first_of(".eE") == std::string::npos) out += ".0";
      return out;
    }
    std::string operator()(const std::string& s) const { return TomlString(s); }
    std::string operator()(const std::vector<std::string>& l) const {
      std::string out = "[";
      for (const auto& item : l) out += (out.size() > 1 ? ", " : "") + TomlString(item);
      return out + "]";
    }
  };
  return std::visit(Visit{}, value);
}

// A kEntries field as a `[key]` table: for each key its last entry (the one that counts), by key
// as the loader reads a table; an entry from the command line as the file would hold it.
std::string DumpEntries(const Field& f, const std::string& key) {
  const auto& entries = *std::get<std::vector<Entry>*>(f.target);
  if (entries.empty()) return {};
  std::map<std::string, const Entry*> last;
  for (const Entry& e : entries) last[e.key] = &e;
  std::string out = "\n[" + key + "]\n";
  for (const auto& [name, e] : last) {
    const Entry::Value value = e->from_text && f.typed_entry ? f.typed_entry(*e) : e->value;
    out += TomlKey(name) + " = " + TomlEntryValue(value) + "\n";
  }
  return out;
}

}  // namespace

std::string TomlValue(const Field& field) {
  if (field.kind == Kind::kBool || field.kind == Kind::kInt) return ValueText(field);
  if (field.kind == Kind::kEntries) return {};
  if (field.kind == Kind::kList) {
    return TomlEntryValue(*std::get<std::vector<std::string>*>(field.target));
  }
  return TomlString(*std::get<std::string*>(field.target));
}

std::string DumpToml(const Schema& schema) {
  std::string out;
  std::string tables;  // after every plain key: a key after a [table] would belong to it
  std::vector<const void*> seen;
  for (const Field& f : schema) {
    const void* target = std::visit([](auto* p) { return static_cast<const void*>(p); }, f.target);
    if (std::find(seen.begin(), seen.end(), target) != seen.end()) continue;  // an alias
    seen.push_back(target);
    const std::string key = SwitchName(f).substr(2);  // spelled like the switch
    if (f.kind == Kind::kEntries) {
      tables += DumpEntries(f, key);
      continue;
    }
    if (f.kind == Kind::kInt && !f.unset_text.empty()) {
      const int64_t v = *std::get<int64_t*>(f.target);
      if (v < f.min || v > f.max) {
        out += "# " + key + ": not set (" + f.unset_text + ")\n";
        continue;
      }
    }
    out += key + " = " + TomlValue(f) + "\n";
  }
  return out + tables;
}

std::string OneLine(std::string_view text) {
  std::string out;
  for (const char c : text) {
    const auto u = static_cast<unsigned char>(c);
    if (u >= 0x20 && u != 0x7f) {
      out += c;
    } else if (c == '\n') {
      out += "\\n";
    } else {
      static constexpr char kHex[] = "0123456789abcdef";
      out += "\\x";
      out += kHex[u >> 4];
      out += kHex[u & 15];
    }
  }
  return out;
}

}  // namespace core::config
