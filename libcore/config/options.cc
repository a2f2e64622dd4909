#include "libcore/config/options.h"

#include <charconv>
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

Status SetFromText(const Field& field, std::string_view text) {
  const std::string name = SwitchName(field);
  switch (field.kind) {
    case Kind::kBool: {
      const std::string t = Lower(text);
      bool v;
      if (t == "true" || t == "yes" || t == "on" || t == "1") {
        v = true;
      } else if (t == "false" || t == "no" || t == "off" || t == "0") {
        v = false;
      } else {
        return Fail(Error::Usage(name + ": '" + std::string(text) +
                                 "' is not a boolean (true/false/yes/no/on/off/1/0)"));
      }
      *std::get<bool*>(field.target) = v;
      return {};
    }
    case Kind::kInt: {
      int64_t v = 0;
      const char* end = text.data() + text.size();
      auto [p, ec] = std::from_chars(text.data(), end, v);
      if (text.empty() || ec == std::errc::invalid_argument || p != end) {
        return Fail(Error::Usage(name + ": '" + std::string(text) + "' is not an integer"));
      }
      if (ec == std::errc::result_out_of_range || v < field.min || v > field.max) {
        return Fail(Error::Usage(name + ": " + std::string(text) + " is out of range " +
                                 std::to_string(field.min) + ".." + std::to_string(field.max)));
      }
      *std::get<int64_t*>(field.target) = v;
      return {};
    }
    case Kind::kString:
      *std::get<std::string*>(field.target) = std::string(text);
      return {};
    case Kind::kChoice: {
      const std::string t = Lower(text);
      std::string all;
      for (const auto& c : field.choices) {
        if (Lower(c) == t) {
          *std::get<std::string*>(field.target) = c;
          return {};
        }
        all += (all.empty() ? "" : "|") + c;
      }
      return Fail(Error::Usage(name + ": '" + std::string(text) + "' is not one of " + all));
    }
    case Kind::kEntries: {
      const size_t eq = text.find('=');
      if (eq == std::string_view::npos || eq == 0) {
        return Fail(Error::Usage(name + ": '" + std::string(text) + "' is not KEY=VALUE"));
      }
      Entry e;
      e.key = std::string(text.substr(0, eq));
      e.value = std::string(text.substr(eq + 1));
      e.from_text = true;
      e.where = name;
      std::get<std::vector<Entry>*>(field.target)->push_back(std::move(e));
      return {};
    }
  }
  return Fail(Error::Usage(name + ": unsupported option kind"));
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
  }
  return {};
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
