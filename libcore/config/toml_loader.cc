#include "libcore/config/toml_loader.h"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <fstream>
#include <sstream>
#include <system_error>
#include <vector>

#include <sys/stat.h>
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

// One problem of a file, kept with its position so that all of them are reported in file order.
struct Problem {
  int64_t line;
  int64_t column;
  std::string text;
};

// `written` is the key as the file spells it, for the message.
Result<bool> SetFromNode(const Field& f, std::string_view written, const toml::node& node,
                         std::string_view source) {
  const std::string prefix =
      Where(source, node.source()) + ": key '" + std::string(written) + "': ";
  auto wrong_type = [&] {
    return Fail(
        Error::Config(prefix + "expected " + Expected(f) + ", found " + TypeName(node.type())));
  };
  switch (f.kind) {
    case Kind::kBool:
      if (!node.is_boolean()) return wrong_type();
      *std::get<bool*>(f.target) = node.as_boolean()->get();
      return true;
    case Kind::kInt: {
      if (!node.is_integer()) return wrong_type();
      const int64_t v = node.as_integer()->get();
      if (v < f.min || v > f.max) {
        return Fail(
            Error::Config(prefix + "expected " + Expected(f) + ", got " + std::to_string(v)));
      }
      *std::get<int64_t*>(f.target) = v;
      return true;
    }
    case Kind::kString:
      if (!node.is_string()) return wrong_type();
      *std::get<std::string*>(f.target) = node.as_string()->get();
      return true;
    case Kind::kChoice: {
      if (!node.is_string()) return wrong_type();
      if (!SetFromText(f, node.as_string()->get())) {
        return Fail(Error::Config(prefix + "expected " + Expected(f) + ", got '" +
                                  node.as_string()->get() + "'"));
      }
      return true;
    }
    case Kind::kEntries:  // SetEntries()
      return wrong_type();
    case Kind::kList: {
      const toml::array* a = node.as_array();
      if (a == nullptr) return wrong_type();
      std::vector<std::string> items;
      for (const auto& item : *a) {
        if (!item.is_string()) {
          return Fail(Error::Config(prefix + "expected " + Expected(f) + ", found " +
                                    TypeName(item.type()) + " in it"));
        }
        items.push_back(item.as_string()->get());
      }
      *std::get<std::vector<std::string>*>(f.target) = std::move(items);
      return true;
    }
  }
  return true;
}

// A kEntries field: `[key]` (or `key = { ... }`) whose keys the daemon checks. Each bad entry is
// one problem at its own line, named as written (`protocol.safe_attrs`).
void SetEntries(const Field& f, std::string_view written, const toml::node& node,
                std::string_view source, std::vector<Problem>* problems) {
  if (!node.is_table()) {
    problems->push_back({node.source().begin.line, 0,
                         Where(source, node.source()) + ": key '" + std::string(written) +
                             "': expected a table, found " + TypeName(node.type())});
    return;
  }
  auto* out = std::get<std::vector<Entry>*>(f.target);
  for (const auto& [key, value] : *node.as_table()) {
    Entry e;
    e.key = std::string(key.str());
    e.where = Where(source, key.source());
    const int64_t line = key.source().begin.line;
    const std::string what = e.where + ": key '" + std::string(written) + "." + e.key + "': ";
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
      const toml::node* wrong = nullptr;
      for (const auto& item : *a) {
        if (!item.is_string()) {
          wrong = &item;
          break;
        }
        items.push_back(item.as_string()->get());
      }
      if (wrong != nullptr) {
        problems->push_back(
            {line, 0,
             what + "expected an array of strings, found " + TypeName(wrong->type()) + " in it"});
        continue;
      }
      e.value = std::move(items);
    } else {
      problems->push_back({line, 0, what + "unsupported value, found " + TypeName(value.type())});
      continue;
    }
    if (f.check_entry) {
      if (auto st = f.check_entry(e); !st) {
        problems->push_back({line, 0, st.error().message()});
        continue;
      }
    }
    out->push_back(std::move(e));
  }
}

// `key = word` where the word is a bare string (`mode = threaded`): toml++ reports a bad
// boolean or value; the user forgot the quotes. Returns the hint, or "".
std::string QuoteHint(std::string_view line) {
  const size_t eq = line.find('=');
  if (eq == std::string_view::npos) return {};
  auto trim = [](std::string_view t) {
    while (!t.empty() && (t.front() == ' ' || t.front() == '\t')) t.remove_prefix(1);
    while (!t.empty() && (t.back() == ' ' || t.back() == '\t' || t.back() == '\r')) {
      t.remove_suffix(1);
    }
    return t;
  };
  const std::string_view key = trim(line.substr(0, eq));
  std::string_view value = trim(line.substr(eq + 1));
  if (const size_t hash = value.find('#'); hash != std::string_view::npos) {
    value = trim(value.substr(0, hash));
  }
  if (key.empty() || value.empty() || value == "true" || value == "false") return {};
  if (!std::isalpha(static_cast<unsigned char>(value.front())) && value.front() != '/') return {};
  for (const char c : value) {
    if (c == '"' || c == '\'' || c == '[' || c == '{' || c == '=') return {};
  }
  return " (a string must be quoted: " + std::string(key) + " = \"" + std::string(value) + "\")";
}

// toml++ stops at the first syntax error. To report every one, the line it points at is blanked
// and the text parsed again (at most kMaxSyntaxErrors times); the keys of the text that finally
// parses are then checked too.
constexpr int kMaxSyntaxErrors = 20;

Status LoadToml(std::string_view text, std::string_view source, const Schema& schema,
                std::map<std::string, int>* lines, std::map<std::string, std::string>* spellings) {
  std::vector<Problem> problems;
  std::string work(text);
  toml::table table;
  for (int attempt = 0;; ++attempt) {
    try {
      table = toml::parse(work, source);
      break;
    } catch (const toml::parse_error& e) {
      const auto& b = e.source().begin;
      // The line's extent in `work` (lines are 1-based).
      size_t begin = 0;
      for (uint32_t l = 1; l < b.line && begin != std::string::npos; ++l) {
        begin = work.find('\n', begin);
        if (begin != std::string::npos) ++begin;
      }
      std::string hint;
      size_t end = std::string::npos;
      if (begin != std::string::npos && begin <= work.size()) {
        end = work.find('\n', begin);
        if (end == std::string::npos) end = work.size();
        hint = QuoteHint(std::string_view(work).substr(begin, end - begin));
      }
      problems.push_back({static_cast<int64_t>(b.line), static_cast<int64_t>(b.column),
                          std::string(source) + ":" + std::to_string(b.line) + ":" +
                              std::to_string(b.column) + ": " + std::string(e.description()) +
                              hint});
      if (attempt + 1 >= kMaxSyntaxErrors || end == std::string::npos || end == begin) {
        // Nothing left to blank (or too many): report what was found.
        table = toml::table{};
        break;
      }
      work.replace(begin, end - begin, std::string());
    }
  }
  // Which key of the file set each member, so that one spelled twice is reported.
  std::map<const void*, std::pair<std::string, int64_t>> set_by;
  for (const auto& [key, node] : table) {
    const Field* field = nullptr;
    for (const auto& f : schema) {
      if (SameKey(f.key, key.str())) field = &f;
    }
    const int64_t line = key.source().begin.line;
    const std::string written(key.str());
    if (field == nullptr) {
      problems.push_back(
          {line, 0, Where(source, key.source()) + ": key '" + written + "': unknown key"});
      continue;
    }
    const void* target =
        std::visit([](auto* p) { return static_cast<const void*>(p); }, field->target);
    if (auto it = set_by.find(target); it != set_by.end()) {
      // Report it at the later of the two lines, naming the earlier.
      const auto& [other, other_line] = it->second;
      const bool later = line > other_line;
      problems.push_back({later ? line : other_line, 0,
                          std::string(source) + ":" + std::to_string(later ? line : other_line) +
                              ": key '" + (later ? written : other) + "': the same setting as '" +
                              (later ? other : written) + "' on line " +
                              std::to_string(later ? other_line : line) + "; keep one"});
      continue;
    }
    set_by[target] = {written, line};
    if (field->kind == Kind::kEntries) {
      SetEntries(*field, written, node, source, &problems);
      if (lines != nullptr) (*lines)[field->key] = static_cast<int>(line);
      if (spellings != nullptr) (*spellings)[field->key] = written;
      continue;
    }
    auto st = SetFromNode(*field, written, node, source);
    if (!st) {
      problems.push_back({line, 0, st.error().message()});
      continue;
    }
    if (lines != nullptr) (*lines)[field->key] = static_cast<int>(line);
    if (spellings != nullptr) (*spellings)[field->key] = written;
  }
  if (problems.empty()) return {};
  std::stable_sort(problems.begin(), problems.end(), [](const Problem& a, const Problem& b) {
    return a.line != b.line ? a.line < b.line : a.column < b.column;
  });
  // Keys, values and toml++'s descriptions (which quote the character it saw) may hold line
  // breaks: each problem stays one line, and the lines are joined by '\n'.
  std::string all;
  for (const auto& p : problems) all += (all.empty() ? "" : "\n") + OneLine(p.text);
  return Fail(Error::Config(all));
}

}  // namespace

Status LoadTomlText(std::string_view text, std::string_view source, const Schema& schema,
                    std::map<std::string, int>* lines,
                    std::map<std::string, std::string>* spellings) {
  return LoadToml(text, source, schema, lines, spellings);
}

Status LoadTomlFile(const std::string& path, const Schema& schema,
                    std::map<std::string, int>* lines,
                    std::map<std::string, std::string>* spellings) {
  // A directory opens as an ifstream and reads as empty: the daemon would run on its defaults.
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) {
    return Fail(Error::Config(path + ": is a directory, not a configuration file"));
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    const int saved = errno;
    return Fail(Error::Config(path + ": cannot open the configuration file: " +
                              std::error_code(saved, std::generic_category()).message()));
  }
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) return Fail(Error::Config(path + ": cannot read the configuration file"));
  return LoadTomlText(text.str(), path, schema, lines, spellings);
}

}  // namespace core::config
