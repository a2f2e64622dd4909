#include "libcore/config/cli.h"

#include <cctype>
#include <deque>
#include <string_view>
#include <vector>

#include <CLI/CLI.hpp>

#include "libcore/config/toml_loader.h"

namespace core::config {
namespace {

CliOutcome Exit(int code, std::string message, bool to_stderr) {
  if (to_stderr) message = OneLine(message);
  CliOutcome out;
  out.exit = true;
  out.exit_code = code;
  out.message = std::move(message);
  out.to_stderr = to_stderr;
  return out;
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
      return Fail(Error::Usage(app + ": " + std::string(arg) + ": '" + std::string(word) +
                               "' is not a boolean (true/false/yes/no/on/off/1/0)"));
    }
    out.push_back(long_name + "=" + std::string(word));
  }
  return out;
}

}  // namespace

std::string Origins::FileLine(const std::string& key) const {
  if (switches.count(key) != 0) return {};
  auto it = file_lines.find(key);
  if (it == file_lines.end()) return {};
  return file + ":" + std::to_string(it->second);
}

CliOutcome ParseCommandLine(int argc, const char* const* argv, const AppInfo& info,
                            const Schema& schema) {
  CLI::App app{info.description, info.name};
  app.set_version_flag("--version", info.version);
  app.get_formatter()->column_width(34);

  std::string config_path;
  bool check_config = false;
  app.add_option("-c,--config", config_path, "TOML configuration file (switches override it)");
  app.add_flag("--check-config", check_config,
               "Load and validate the configuration, then exit (0 when valid)");

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
    const std::string value = ValueText(f);
    const std::string help =
        info.typed_help && value.empty() ? f.help : f.help + " [default: " + value + "]";
    if (f.kind == Kind::kEntries) {
      b.list = &lists.emplace_back();
      b.option = app.add_option(f.switches, *b.list, f.help)->allow_extra_args(false);
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
    return Exit(kExitUsage, info.name + ": " + e.what() + " (try --help)", true);
  }

  Origins origins;
  origins.file = config_path;
  if (!config_path.empty()) {
    auto st = LoadTomlFile(config_path, schema, &origins.file_lines);
    if (!st) return Exit(kExitConfig, info.name + ": " + st.error().message(), true);
  }
  for (const Binding& b : bindings) {
    if (b.option->count() == 0) continue;
    origins.switches.insert(b.field->key);
    if (b.flag != nullptr) {
      *std::get<bool*>(b.field->target) = *b.flag;
      continue;
    }
    if (b.list != nullptr) {
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
  if (check_config && info.check) {
    auto st = info.check();
    if (!st) {
      const int code = st.error().code() == Error::Code::kUsage ? kExitUsage : kExitConfig;
      return Exit(code, info.name + ": " + st.error().message(), true);
    }
  }
  if (check_config) {
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
