#include "libcore/config/toml_loader.h"

#include <fstream>
#include <sstream>

#include <toml++/toml.h>

namespace core::config {
namespace {

// Keys are matched with '-' and '_' taken as the same character, so `max-connections` and
// `max_connections` both name --max-connections.
bool SameKey(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    const char x = a[i] == '-' ? '_' : a[i];
    const char y = b[i] == '-' ? '_' : b[i];
    if (x != y) return false;
  }
  return true;
}

std::string Where(std::string_view source, const toml::source_region& r) {
  return std::string(source) + ":" + std::to_string(r.begin.line);
}

std::string TypeName(toml::node_type t) {
  switch (t) {
    case toml::node_type::string:
      return "a string";
    case toml::node_type::integer:
      return "an integer";
    case toml::node_type::floating_point:
      return "a float";
    case toml::node_type::boolean:
      return "a boolean";
    case toml::node_type::table:
      return "a table";
    case toml::node_type::array:
      return "an array";
    default:
      return "a date/time";
  }
}

Status SetFromNode(const Field& f, const toml::node& node, std::string_view source) {
  const std::string prefix = Where(source, node.source()) + ": key '" + f.key + "': ";
  auto wrong_type = [&](const char* want) {
    return Fail(Error::Config(prefix + "expected " + want + ", found " + TypeName(node.type())));
  };
  switch (f.kind) {
    case Kind::kBool:
      if (!node.is_boolean()) return wrong_type("a boolean");
      *std::get<bool*>(f.target) = node.as_boolean()->get();
      return {};
    case Kind::kInt: {
      if (!node.is_integer()) return wrong_type("an integer");
      const int64_t v = node.as_integer()->get();
      if (v < f.min || v > f.max) {
        return Fail(Error::Config(prefix + std::to_string(v) + " is out of range " +
                                  std::to_string(f.min) + ".." + std::to_string(f.max)));
      }
      *std::get<int64_t*>(f.target) = v;
      return {};
    }
    case Kind::kString:
      if (!node.is_string()) return wrong_type("a string");
      *std::get<std::string*>(f.target) = node.as_string()->get();
      return {};
    case Kind::kEntries: {
      if (!node.is_table()) return wrong_type("a table");
      auto* out = std::get<std::vector<Entry>*>(f.target);
      for (const auto& [key, value] : *node.as_table()) {
        Entry e;
        e.key = std::string(key.str());
        e.where = Where(source, key.source());
        const std::string what = e.where + ": key '" + f.key + "." + e.key + "': ";
        if (auto b = value.as_boolean()) {
          e.value = b->get();
        } else if (auto i = value.as_integer()) {
          e.value = i->get();
        } else if (auto d = value.as_floating_point()) {
          e.value = d->get();
        } else if (auto s = value.as_string()) {
          e.value = s->get();
        } else if (auto a = value.as_array()) {
          std::vector<std::string> items;
          for (const auto& item : *a) {
            if (!item.is_string()) {
              return Fail(Error::Config(what + "expected an array of strings, found " +
                                        TypeName(item.type()) + " in it"));
            }
            items.push_back(item.as_string()->get());
          }
          e.value = std::move(items);
        } else {
          return Fail(Error::Config(what + "unsupported value, found " + TypeName(value.type())));
        }
        out->push_back(std::move(e));
      }
      return {};
    }
    case Kind::kChoice: {
      if (!node.is_string()) return wrong_type("a string");
      auto st = SetFromText(f, node.as_string()->get());
      if (!st) {
        std::string all;
        for (const auto& c : f.choices) all += (all.empty() ? "" : "|") + c;
        return Fail(
            Error::Config(prefix + "'" + node.as_string()->get() + "' is not one of " + all));
      }
      return {};
    }
  }
  return {};
}

Status LoadToml(std::string_view text, std::string_view source, const Schema& schema,
                std::map<std::string, int>* lines) {
  toml::table table;
  try {
    table = toml::parse(text, source);
  } catch (const toml::parse_error& e) {
    const auto& b = e.source().begin;
    return Fail(Error::Config(std::string(source) + ":" + std::to_string(b.line) + ":" +
                              std::to_string(b.column) + ": " + std::string(e.description())));
  }
  for (const auto& [key, node] : table) {
    const Field* field = nullptr;
    for (const auto& f : schema) {
      if (SameKey(f.key, key.str())) field = &f;
    }
    if (field == nullptr) {
      return Fail(Error::Config(Where(source, key.source()) + ": key '" + std::string(key.str()) +
                                "': unknown key"));
    }
    auto st = SetFromNode(*field, node, source);
    if (!st) return st;
    if (lines != nullptr) (*lines)[field->key] = static_cast<int>(key.source().begin.line);
  }
  return {};
}

}  // namespace

Status LoadTomlText(std::string_view text, std::string_view source, const Schema& schema,
                    std::map<std::string, int>* lines) {
  // Keys, values and toml++'s descriptions (which quote the character it saw) may hold line
  // breaks: the error stays one line.
  auto st = LoadToml(text, source, schema, lines);
  if (!st) return Fail(Error::Config(OneLine(st.error().message())));
  return st;
}

Status LoadTomlFile(const std::string& path, const Schema& schema,
                    std::map<std::string, int>* lines) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Fail(Error::Config(path + ": cannot open the configuration file"));
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) return Fail(Error::Config(path + ": cannot read the configuration file"));
  return LoadTomlText(text.str(), path, schema, lines);
}

}  // namespace core::config
