// libFuzzer target: the configuration path of both daemons (schema -> toml++ and CLI11). The
// first byte picks the daemon (bit 0: rpyc-registryd, else rpyc-classicd) and whether the TOML
// text also goes through -c FILE (bit 1). The rest is the TOML text up to the first NUL, then the
// command-line arguments separated by NULs (at most 32).
//
// Invariants: no crash, no exception escapes, every error is one non-empty line (a file's
// errors are one line each, joined by '\n'), and whatever is accepted lies within the schema:
// ints in range, choices one of the listed spellings.

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include <unistd.h>

#include "daemons/classicd/classicd.h"
#include "daemons/registryd/registryd.h"
#include "libcore/config/cli.h"
#include "libcore/config/toml_loader.h"

namespace {

using core::config::Field;
using core::config::Kind;
using core::config::Schema;

void Check(bool ok) {
  if (!ok) std::abort();
}

// The values a schema's targets hold, as text, to compare against the defaults.
std::vector<std::string> Snapshot(const Schema& schema) {
  std::vector<std::string> out;
  for (const Field& f : schema) out.push_back(core::config::ValueText(f));
  return out;
}

// Every field either kept its default or holds a value the schema allows.
void CheckWithinSchema(const Schema& schema, const std::vector<std::string>& defaults) {
  for (size_t i = 0; i < schema.size(); ++i) {
    const Field& f = schema[i];
    if (core::config::ValueText(f) == defaults[i]) continue;
    if (f.kind == Kind::kInt) {
      const int64_t v = *std::get<int64_t*>(f.target);
      Check(v >= f.min && v <= f.max);
    } else if (f.kind == Kind::kChoice) {
      const std::string& v = *std::get<std::string*>(f.target);
      bool listed = false;
      for (const std::string& c : f.choices) listed = listed || v == c;
      Check(listed);
    }
  }
}

// Every line non-empty and free of other control characters (a file's errors are several lines).
void CheckErrorLines(const std::string& message) {
  Check(!message.empty());
  size_t begin = 0;
  while (begin <= message.size()) {
    size_t end = message.find('\n', begin);
    if (end == std::string::npos) end = message.size();
    if (end == message.size() && begin == end && begin != 0) break;  // a final '\n'
    Check(end > begin);
    for (size_t i = begin; i < end; ++i) Check(message[i] != '\r');
    begin = end + 1;
  }
}

// Arguments that would name a configuration file (-c, --config, "-qc" style bundles) are dropped:
// the file is the fuzzer's own, passed explicitly.
bool NamesConfigFile(const std::string& arg) {
  if (arg.rfind("--conf", 0) == 0) return true;
  return arg.size() > 1 && arg[0] == '-' && arg[1] != '-' && arg.find('c') != std::string::npos;
}

const std::string& ConfigPath() {
  static const std::string path = "/tmp/config_fuzz." + std::to_string(getpid()) + ".toml";
  return path;
}

template <typename Options>
void Run(std::string_view toml, const std::vector<std::string>& args, bool via_file,
         Schema (*make_schema)(Options*),
         core::config::CliOutcome (*parse)(int, const char* const*, Options*)) {
  {
    Options o;
    Schema schema = make_schema(&o);
    const auto defaults = Snapshot(schema);
    auto st = core::config::LoadTomlText(toml, "<fuzz>", schema);
    if (st) {
      CheckWithinSchema(schema, defaults);
    } else {
      CheckErrorLines(st.error().message());
    }
  }
  Options o;
  Options fresh;
  const auto defaults = Snapshot(make_schema(&fresh));
  std::vector<const char*> argv = {"fuzzd"};
  if (via_file) {
    std::FILE* f = std::fopen(ConfigPath().c_str(), "wb");
    Check(f != nullptr);
    Check(std::fwrite(toml.data(), 1, toml.size(), f) == toml.size());
    std::fclose(f);
    argv.push_back("-c");
    argv.push_back(ConfigPath().c_str());
  } else {
    argv.push_back("-c");  // not the machine's default file
    argv.push_back("");
  }
  for (const std::string& a : args) argv.push_back(a.c_str());
  auto out = parse(static_cast<int>(argv.size()), argv.data(), &o);
  if (out.exit && out.exit_code != core::config::kExitOk) CheckErrorLines(out.message);
  if (!out.exit) CheckWithinSchema(make_schema(&o), defaults);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const uint8_t mode = data[0];
  std::string_view in(reinterpret_cast<const char*>(data) + 1, size - 1);
  const size_t nul = in.find('\0');
  const std::string_view toml = in.substr(0, nul);
  std::vector<std::string> args;
  if (nul != std::string_view::npos) {
    std::string_view rest = in.substr(nul + 1);
    while (args.size() < 32) {
      const size_t end = rest.find('\0');
      std::string arg(rest.substr(0, end));
      if (!NamesConfigFile(arg)) args.push_back(std::move(arg));
      if (end == std::string_view::npos) break;
      rest = rest.substr(end + 1);
    }
  }
  const bool via_file = (mode & 2) != 0;
  if ((mode & 1) != 0) {
    Run<registryd::Options>(toml, args, via_file, registryd::MakeSchema, registryd::ParseOptions);
  } else {
    Run<classicd::Options>(toml, args, via_file, classicd::MakeSchema, classicd::ParseOptions);
  }
  return 0;
}
