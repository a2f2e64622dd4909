#include "libcore/config/cli.h"

#include <cctype>
#include <cerrno>
#include <deque>
#include <string_view>
#include <vector>

#include <CLI/CLI.hpp>
#include <sys/stat.h>

#include "libcore/config/toml_loader.h"

namespace core::config {
namespace {

struct Multi {};

CliOutcome Exit(int code, std::string message, bool to_stderr, Multi /*already escaped*/) {
  CliOutcome out;
  out.exit = true;
  out.exit_code = code;
  out.message = std::move(message);
  out.to_stderr = to_stderr;
  return out;
}

CliOutcome Exit(int code, std::string message, bool to_stderr) {
  if (to_stderr) message = OneLine(message);
  return Exit(code, std::move(message), to_stderr, Multi{});
}

// Errors of a file are several lines, each already one line (LoadTomlText); each gets `prefix`.
CliOutcome ExitLines(int code, const std::string& prefix, std::string_view lines) {
  std::string message;
  while (!lines.empty()) {
    const size_t nl = lines.find('\n');
    message += (message.empty() ? "" : "\n") + prefix + OneLine(lines.substr(0, nl));
    lines = nl == std::string_view::npos ? "" : lines.substr(nl + 1);
  }
  return Exit(code, std::move(message), true, Multi{});
}

std::string TypeName(const Field& f) {
  switch (f.kind) {
    case Kind::kInt:
      return "INT";
    case Kind::kChoice: {
      std::string out = "{";
      for (const auto& c : f.choices) out += (out.size() > 1 ? "," : "") + c;
      return out + "}";
    }
    default:
      return "TEXT";
  }
}

bool IsBoolWord(std::string_view word) {
  std::string t(word);
  for (char& c : t) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  for (const char* w : {"true", "false", "yes", "no", "on", "off", "1", "0"}) {
    if (t == w) return true;
  }
  return false;
}

// `-l WORD` -> `--listing=WORD` for every boolean switch followed by a word that is not a switch
// (CLI11 flags take a value only after '=').
Result<std::vector<std::string>> JoinFlagValues(int argc, const char* const* argv,
                                                const Schema& schema, const std::string& app) {
  std::vector<std::string> out;
  if (argc > 0) out.emplace_back(argv[0]);
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    const Field* flag = nullptr;
    std::string long_name;
    for (const Field& f : schema) {
      if (f.kind != Kind::kBool || f.switches.empty()) continue;
      std::string_view names = f.switches;
      while (!names.empty()) {
        const size_t comma = names.find(',');
        const std::string_view name = names.substr(0, comma);
        if (name.starts_with("--")) long_name = name;
        if (name == arg) flag = &f;
        names = comma == std::string_view::npos ? "" : names.substr(comma + 1);
      }
      if (flag != nullptr) break;
    }
    if (flag == nullptr || long_name.empty() || i + 1 >= argc || argv[i + 1][0] == '-') {
      out.emplace_back(arg);
      continue;
    }
    const std::string_view word = argv[++i];
    if (!IsBoolWord(word)) {
      return Fail(Error::Usage(app + ": " + std::string(arg) +
                               ": expected a boolean (true/false/yes/no/on/off/1/0), got '" +
                               std::string(word) + "'"));
    }
    out.push_back(long_name + "=" + std::string(word));
  }
  return out;
}

// The error of a switch CLI11 refused (a missing value, a value given to a plain flag), in our
// words: "--port: expected a number 0-65535". Falls back to CLI11's text.
std::string SwitchError(const CLI::ParseError& e, const Schema& schema) {
  const std::string what = e.what();
  for (const Field& f : schema) {
    if (f.switches.empty()) continue;
    std::string_view names = f.switches;
    while (!names.empty()) {
      const size_t comma = names.find(',');
      const std::string name(names.substr(0, comma));
      names = comma == std::string_view::npos ? "" : names.substr(comma + 1);
      if (!name.starts_with("--")) continue;
      const size_t at = what.find(name);
      const size_t after = at + name.size();
      if (at == std::string::npos ||
          (after < what.size() && (std::isalnum(static_cast<unsigned char>(what[after])) != 0 ||
                                   what[after] == '-' || what[after] == '_'))) {
        continue;
      }
      return name + ": expected " + Expected(f);
    }
  }
  if (what.find("--config") != std::string::npos) return "--config: expected a file name";
  return what;
}

}  // namespace

std::string Origins::FileLine(const std::string& key) const {
  if (switches.count(key) != 0) return {};
  auto it = file_lines.find(key);
  if (it == file_lines.end()) return {};
  return file + ":" + std::to_string(it->second);
}

std::string LogLine(const CliOutcome& outcome) {
  std::string out;
  for (const char c : outcome.message) {
    if (c == '\n') {
      out += "; ";
    } else {
      out += c;
    }
  }
  while (out.ends_with("; ")) out.resize(out.size() - 2);
  return out;
}

std::string Origins::Written(const std::string& key) const {
  auto it = file_spellings.find(key);
  return it == file_spellings.end() ? key : it->second;
}

CliOutcome ParseCommandLine(int argc, const char* const* argv, const AppInfo& info,
                            const Schema& schema) {
  CLI::App app{info.description, info.name};
  app.set_version_flag("-v,--version", info.version);
  app.get_formatter()->column_width(34);
  app.allow_extras();  // reported below, in our words
  // A switch given twice: the last one counts, as with most tools (a wrapper appends to a unit's
  // command line).
  app.option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);

  std::string config_path;
  bool check_config = false;
  bool dump_config = false;
  const std::string config_help =
      info.default_config.empty()
          ? "TOML configuration file (switches override it)"
          : "TOML configuration file (switches override it) [default: " + info.default_config +
                " if it exists; '' reads none]";
  CLI::Option* config_option = app.add_option("-c,--config", config_path, config_help);
  if (info.typed_help) config_option->type_name("FILE");
  app.add_flag("--check-config", check_config,
               "Load and validate the configuration and open the files a start opens, then exit "
               "(0 when valid)");
  app.add_flag("--dump-config", dump_config,
               "Print the effective configuration (defaults, file and switches merged) as TOML, "
               "then exit");

  // CLI11 writes into staging variables; the schema's members are only touched after the file
  // has been loaded, so explicit switches win over the file and the file over the defaults.
  std::deque<bool> bools;
  std::deque<std::string> texts;
  std::deque<std::vector<std::string>> lists;
  struct Binding {
    const Field* field;
    CLI::Option* option;
    bool* flag;
    std::string* text;
    std::vector<std::string>* list = nullptr;
  };
  std::vector<Binding> bindings;
  for (const Field& f : schema) {
    if (f.switches.empty()) continue;
    Binding b{&f, nullptr, nullptr, nullptr};
    std::string value = ValueText(f);
    if (f.kind == Kind::kInt && !f.unset_text.empty() &&
        (*std::get<int64_t*>(f.target) < f.min || *std::get<int64_t*>(f.target) > f.max)) {
      value = f.unset_text;
    }
    const std::string help =
        info.typed_help && value.empty() ? f.help : f.help + " [default: " + value + "]";
    if (f.kind == Kind::kList) {
      b.list = &lists.emplace_back();
      b.option = app.add_option(f.switches, *b.list, help)
                     ->allow_extra_args(false)
                     ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
      if (info.typed_help) b.option->type_name("TEXT,...");
    } else if (f.kind == Kind::kEntries) {
      b.list = &lists.emplace_back();
      // Repeatable: every one counts (the default policy keeps the last).
      b.option = app.add_option(f.switches, *b.list, f.help)
                     ->allow_extra_args(false)
                     ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
      b.option->type_name("KEY=VALUE");
    } else if (f.kind == Kind::kBool) {
      b.flag = &bools.emplace_back(false);
      b.option = app.add_flag(f.switches, *b.flag, help);
      if (info.typed_help && info.flag_values) b.option->type_name("[BOOL]");
    } else {
      b.text = &texts.emplace_back();
      b.option = app.add_option(f.switches, *b.text, help);
      if (info.typed_help) b.option->type_name(TypeName(f));
    }
    bindings.push_back(b);
  }

  std::vector<std::string> args;
  if (info.flag_values) {
    auto joined = JoinFlagValues(argc, argv, schema, info.name);
    if (!joined) return Exit(kExitUsage, joined.error().message(), true);
    args = std::move(*joined);
  } else {
    args.assign(argv, argv + argc);
  }
  std::vector<const char*> arg_ptrs;
  for (const auto& a : args) arg_ptrs.push_back(a.c_str());

  try {
    app.parse(static_cast<int>(arg_ptrs.size()), arg_ptrs.data());
  } catch (const CLI::CallForHelp&) {
    return Exit(kExitOk, app.help(), false);
  } catch (const CLI::CallForAllHelp&) {
    return Exit(kExitOk, app.help("", CLI::AppFormatMode::All), false);
  } catch (const CLI::CallForVersion&) {
    return Exit(kExitOk, info.version + "\n", false);
  } catch (const CLI::ParseError& e) {
    return Exit(kExitUsage, info.name + ": " + SwitchError(e, schema) + " (try --help)", true);
  }
  if (const auto extra = app.remaining(); !extra.empty()) {
    const std::string& first = extra.front();
    return Exit(kExitUsage,
                info.name + ": " +
                    (first.starts_with("-") ? "unknown switch '" + first + "'"
                                            : "unexpected argument '" + first + "'") +
                    " (try --help)",
                true);
  }

  if (config_option->count() == 0 && !info.default_config.empty()) {
    struct stat st {};
    if (::stat(info.default_config.c_str(), &st) == 0 || errno != ENOENT) {
      config_path = info.default_config;
    }
  }
  Origins origins;
  origins.file = config_path;
  if (!config_path.empty()) {
    auto st = LoadTomlFile(config_path, schema, &origins.file_lines, &origins.file_spellings);
    if (!st) return ExitLines(kExitConfig, info.name + ": ", st.error().message());
  }
  for (const Binding& b : bindings) {
    if (b.option->count() == 0) continue;
    origins.switches.insert(b.field->key);
    if (b.flag != nullptr) {
      *std::get<bool*>(b.field->target) = *b.flag;
      continue;
    }
    if (b.list != nullptr) {
      // A list's switches replace the file's list; a table's entries add to the file's.
      if (b.field->kind == Kind::kList)
        std::get<std::vector<std::string>*>(b.field->target)->clear();
      for (const auto& item : *b.list) {
        auto st = SetFromText(*b.field, item);
        if (!st) return Exit(kExitUsage, info.name + ": " + st.error().message(), true);
      }
      continue;
    }
    auto st = SetFromText(*b.field, *b.text);
    if (!st) return Exit(kExitUsage, info.name + ": " + st.error().message(), true);
  }
  if (info.validate) {
    auto st = info.validate(origins);
    if (!st) {
      // A Usage error is a switch combination that makes no sense (64); the rest are values
      // that cannot work together, whether they came from the file or the command line (78).
      const int code = st.error().code() == Error::Code::kUsage ? kExitUsage : kExitConfig;
      return Exit(code, info.name + ": " + st.error().message(), true);
    }
  }
  if (dump_config) {
    return Exit(kExitOk,
                "# " + info.name +
                    " --dump-config: the effective configuration (defaults < file < switches)\n" +
                    DumpToml(schema),
                false);
  }
  if (check_config) {
    if (info.check) {
      auto st = info.check();
      if (!st) {
        const int code = st.error().code() == Error::Code::kUsage ? kExitUsage : kExitConfig;
        return Exit(code, info.name + ": " + st.error().message(), true);
      }
    }
    return Exit(kExitOk,
                info.name + ": configuration OK" +
                    (config_path.empty() ? std::string() : " (" + config_path + ")") + "\n",
                false);
  }
  CliOutcome out;
  out.config_path = config_path;
  return out;
}

}  // namespace core::config
