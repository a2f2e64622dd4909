#include "libcore/config/cli.h"

#include <deque>
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
  struct Binding {
    const Field* field;
    CLI::Option* option;
    bool* flag;
    std::string* text;
  };
  std::vector<Binding> bindings;
  for (const Field& f : schema) {
    if (f.switches.empty()) continue;
    Binding b{&f, nullptr, nullptr, nullptr};
    const std::string help = f.help + " [default: " + ValueText(f) + "]";
    if (f.kind == Kind::kBool) {
      b.flag = &bools.emplace_back(false);
      b.option = app.add_flag(f.switches, *b.flag, help);
    } else {
      b.text = &texts.emplace_back();
      b.option = app.add_option(f.switches, *b.text, help);
    }
    bindings.push_back(b);
  }

  try {
    app.parse(argc, argv);
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
