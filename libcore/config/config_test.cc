#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "libcore/config/cli.h"
#include "libcore/config/options.h"
#include "libcore/config/toml_loader.h"
#include "libcore/testing/temp_path.h"

namespace core::config {
namespace {

struct TestOptions {
  std::string mode = "UDP";
  int64_t port = 18811;
  bool listing = false;
  bool quiet = false;
  std::string host = "0.0.0.0";
  std::vector<Entry> extra;
};

Schema MakeSchema(TestOptions* o) {
  return {
      Choice("mode", "-m,--mode", "mode", &o->mode, {"UDP", "TCP", "both"}),
      Int("port", "-p,--port", "port", &o->port, 0, 65535),
      Flag("listing", "-l,--listing", "listing", &o->listing),
      Flag("quiet", "-q,--quiet", "quiet", &o->quiet),
      String("host", "--host", "host", &o->host),
      Entries("extra", "--extra", "extra KEY=VALUE", &o->extra),
  };
}

TEST(TomlLoader, SetsEveryKind) {
  TestOptions o;
  auto st = LoadTomlText("mode = 'tcp'\nport = 1\nlisting = true\nhost = '::'\n", "t.toml",
                         MakeSchema(&o));
  ASSERT_TRUE(st) << st.error().message();
  EXPECT_EQ(o.mode, "TCP");
  EXPECT_EQ(o.port, 1);
  EXPECT_TRUE(o.listing);
  EXPECT_EQ(o.host, "::");
}

struct TomlCase {
  const char* text;
  const char* message;
};

TEST(TomlLoader, EveryErrorNamesFileLineAndKey) {
  const TomlCase cases[] = {
      {"port = 1\nbogus = 2\n", "t.toml:2: key 'bogus': unknown key"},
      {"port = 'x'\n", "t.toml:1: key 'port': expected an integer, found a string"},
      {"\n\nport = 70000\n", "t.toml:3: key 'port': 70000 is out of range 0..65535"},
      {"port = -1\n", "t.toml:1: key 'port': -1 is out of range 0..65535"},
      {"listing = 1\n", "t.toml:1: key 'listing': expected a boolean, found an integer"},
      {"mode = 'tls'\n", "t.toml:1: key 'mode': 'tls' is not one of UDP|TCP|both"},
      {"mode = 3\n", "t.toml:1: key 'mode': expected a string, found an integer"},
      {"host = [1]\n", "t.toml:1: key 'host': expected a string, found an array"},
      {"port = 1.5\n", "t.toml:1: key 'port': expected an integer, found a float"},
  };
  for (const auto& c : cases) {
    TestOptions o;
    auto st = LoadTomlText(c.text, "t.toml", MakeSchema(&o));
    ASSERT_FALSE(st) << c.text;
    EXPECT_EQ(st.error().code(), Error::Code::kConfig);
    EXPECT_EQ(st.error().message(), c.message);
  }
}

// Found by config_fuzz: toml++ quotes the character it saw, a line break included, and keys and
// values may hold one; the error must stay one line.
TEST(TomlLoader, ErrorsStayOneLine) {
  for (const char* text : {"g=f\n", "\"a\\nb\" = 1\n", "mode = \"x\\ny\"\n"}) {
    TestOptions o;
    auto st = LoadTomlText(text, "t.toml", MakeSchema(&o));
    ASSERT_FALSE(st) << text;
    EXPECT_EQ(st.error().message().find_first_of("\n\r"), std::string::npos)
        << st.error().message();
    EXPECT_NE(st.error().message().find("\\n"), std::string::npos) << st.error().message();
  }
}

TEST(TomlLoader, SyntaxErrorHasLineAndColumn) {
  TestOptions o;
  auto st = LoadTomlText("port = 1\nport = = 2\n", "t.toml", MakeSchema(&o));
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().message().rfind("t.toml:2:", 0), 0u) << st.error().message();
}

TEST(TomlLoader, MissingFile) {
  TestOptions o;
  auto st = LoadTomlFile("/nonexistent/x.toml", MakeSchema(&o));
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().message(), "/nonexistent/x.toml: cannot open the configuration file");
}

class CliTest : public ::testing::Test {
 protected:
  CliOutcome Parse(std::vector<std::string> args, bool opt_in = false) {
    args.insert(args.begin(), "prog");
    std::vector<const char*> argv;
    for (const auto& a : args) argv.push_back(a.c_str());
    AppInfo info{"prog", "test program", "prog 1.0", nullptr};
    info.flag_values = opt_in;
    info.typed_help = opt_in;
    return ParseCommandLine(static_cast<int>(argv.size()), argv.data(), info, schema_);
  }
  std::string WriteToml(const std::string& text) {
    path_ = core::testing::TempPath("cli_test.toml");
    std::ofstream(path_) << text;
    return path_;
  }
  void TearDown() override {
    if (!path_.empty()) std::remove(path_.c_str());
  }
  TestOptions o_;
  Schema schema_ = MakeSchema(&o_);
  std::string path_;
};

TEST_F(CliTest, DefaultsStay) {
  auto out = Parse({});
  EXPECT_FALSE(out.exit);
  EXPECT_EQ(o_.port, 18811);
  EXPECT_EQ(o_.mode, "UDP");
}

TEST_F(CliTest, BothSwitchForms) {
  EXPECT_FALSE(Parse({"--port", "1"}).exit);
  EXPECT_EQ(o_.port, 1);
  EXPECT_FALSE(Parse({"--port=2"}).exit);
  EXPECT_EQ(o_.port, 2);
  EXPECT_FALSE(Parse({"-p", "3", "-m", "tcp"}).exit);
  EXPECT_EQ(o_.port, 3);
  EXPECT_EQ(o_.mode, "TCP");
}

TEST_F(CliTest, FlagsTakeOptionalBooleans) {
  EXPECT_FALSE(Parse({"-l", "-q"}).exit);
  EXPECT_TRUE(o_.listing);
  EXPECT_TRUE(o_.quiet);
  for (const char* off : {"--listing=false", "--listing=0", "--listing=no"}) {
    o_.listing = true;
    EXPECT_FALSE(Parse({off}).exit);
    EXPECT_FALSE(o_.listing) << off;
  }
}

TEST_F(CliTest, PrecedenceDefaultsFileCommandLine) {
  const std::string path = WriteToml("port = 5\nmode = 'both'\nlisting = true\n");
  auto out = Parse({"-c", path, "--port", "6"});
  ASSERT_FALSE(out.exit) << out.message;
  EXPECT_EQ(o_.port, 6);       // command line beats the file
  EXPECT_EQ(o_.mode, "both");  // file beats the default
  EXPECT_TRUE(o_.listing);
  EXPECT_EQ(o_.host, "0.0.0.0");  // default when neither sets it
  EXPECT_EQ(out.config_path, path);
}

TEST_F(CliTest, ExplicitFalseFlagBeatsFile) {
  const std::string path = WriteToml("listing = true\n");
  ASSERT_FALSE(Parse({"-c", path, "--listing=false"}).exit);
  EXPECT_FALSE(o_.listing);
}

struct CliCase {
  std::vector<std::string> args;
  int code;
  const char* message_part;
};

TEST_F(CliTest, ErrorTable) {
  const std::string bad = WriteToml("port = 'x'\n");
  const CliCase cases[] = {
      {{"--bogus"}, kExitUsage, "--bogus"},
      {{"--port", "x"}, kExitUsage, "--port: 'x' is not an integer"},
      {{"--port", "65536"}, kExitUsage, "--port: 65536 is out of range 0..65535"},
      {{"--port"}, kExitUsage, "--port"},
      {{"-m", "sctp"}, kExitUsage, "--mode: 'sctp' is not one of UDP|TCP|both"},
      {{"--listing=maybe"}, kExitUsage, "--listing"},
      {{"extra"}, kExitUsage, "extra"},
      {{"-c", bad}, kExitConfig, ":1: key 'port': expected an integer, found a string"},
      {{"-c", "/nonexistent.toml"}, kExitConfig, "cannot open"},
  };
  for (const auto& c : cases) {
    auto out = Parse(c.args);
    EXPECT_TRUE(out.exit) << c.args[0];
    EXPECT_EQ(out.exit_code, c.code) << c.args[0];
    EXPECT_TRUE(out.to_stderr);
    EXPECT_NE(out.message.find(c.message_part), std::string::npos)
        << c.args[0] << " => " << out.message;
  }
}

// Found by config_fuzz: an argument with a line break made a multi-line error.
TEST_F(CliTest, ErrorsStayOneLine) {
  const CliCase cases[] = {
      {{"line one\nline two"}, kExitUsage, "line one\\nline two"},
      {{"--port", "1\n2"}, kExitUsage, "'1\\n2' is not an integer"},
      {{"-m", "a\r\tb"}, kExitUsage, "'a\\x0d\\x09b' is not one of"},
  };
  for (const auto& c : cases) {
    auto out = Parse(c.args);
    EXPECT_EQ(out.exit_code, c.code);
    EXPECT_EQ(out.message.find_first_of("\n\r\t"), std::string::npos) << out.message;
    EXPECT_NE(out.message.find(c.message_part), std::string::npos) << out.message;
  }
}

// Opt-in (rpyc-registryd): flags take an optional separate value; without it nothing changes.
TEST_F(CliTest, FlagValuesAreOptIn) {
  EXPECT_EQ(Parse({"-q", "1"}).exit_code, kExitUsage);
  ASSERT_FALSE(Parse({"-q", "1", "-l", "false", "-p", "3"}, true).exit);
  EXPECT_TRUE(o_.quiet);
  EXPECT_FALSE(o_.listing);
  EXPECT_EQ(o_.port, 3);
  ASSERT_FALSE(Parse({"--listing", "-q", "OFF"}, true).exit);
  EXPECT_TRUE(o_.listing);
  EXPECT_FALSE(o_.quiet);
  auto bad = Parse({"--quiet", "sometimes"}, true);
  EXPECT_EQ(bad.exit_code, kExitUsage);
  EXPECT_EQ(bad.message,
            "prog: --quiet: 'sometimes' is not a boolean (true/false/yes/no/on/off/1/0)");
}

TEST_F(CliTest, TypedHelpIsOptIn) {
  const std::string plain = Parse({"--help"}).message;
  EXPECT_NE(plain.find("-m,--mode TEXT"), std::string::npos) << plain;
  const std::string typed = Parse({"--help"}, true).message;
  EXPECT_NE(typed.find("-m,--mode {UDP,TCP,both}"), std::string::npos) << typed;
  EXPECT_NE(typed.find("-p,--port INT"), std::string::npos) << typed;
  EXPECT_NE(typed.find("-q,--quiet [BOOL]"), std::string::npos) << typed;
  EXPECT_EQ(typed.find("[default: ]"), std::string::npos) << typed;
}

TEST_F(CliTest, HelpVersionCheckConfig) {
  auto help = Parse({"--help"});
  EXPECT_TRUE(help.exit);
  EXPECT_EQ(help.exit_code, 0);
  EXPECT_NE(help.message.find("--port"), std::string::npos);
  auto version = Parse({"--version"});
  EXPECT_EQ(version.exit_code, 0);
  EXPECT_EQ(version.message, "prog 1.0\n");
  const std::string good = WriteToml("port = 7\n");
  auto check = Parse({"-c", good, "--check-config"});
  EXPECT_TRUE(check.exit);
  EXPECT_EQ(check.exit_code, 0);
  EXPECT_NE(check.message.find("configuration OK"), std::string::npos);
}

TEST_F(CliTest, ValidateHookGivesConfigExit) {
  std::vector<std::string> args = {"prog"};
  std::vector<const char*> argv = {args[0].c_str()};
  AppInfo info{"prog", "d", "v",
               [](const Origins&) { return Status(Fail(Error::Config("bad combination"))); }};
  auto out = ParseCommandLine(1, argv.data(), info, schema_);
  EXPECT_EQ(out.exit_code, kExitConfig);
  EXPECT_EQ(out.message, "prog: bad combination");
}

TEST_F(CliTest, ValidateSeesWhereEachValueCameFrom) {
  const std::string path = WriteToml("\nport = 5\nmode = 'both'\n");
  Origins seen;
  AppInfo info{"prog", "d", "v", [&seen](const Origins& o) {
                 seen = o;
                 return Status();
               }};
  std::vector<std::string> args = {"prog", "-c", path, "-m", "tcp"};
  std::vector<const char*> argv;
  for (const auto& a : args) argv.push_back(a.c_str());
  auto out = ParseCommandLine(static_cast<int>(argv.size()), argv.data(), info, schema_);
  EXPECT_FALSE(out.exit) << out.message;
  EXPECT_EQ(seen.FileLine("port"), path + ":2");
  EXPECT_EQ(seen.FileLine("mode"), "");     // the switch overrides the file
  EXPECT_EQ(seen.FileLine("listing"), "");  // a default
  EXPECT_EQ(seen.switches.count("mode"), 1U);
}

TEST(TomlLoader, EntriesKeepTypesAndLines) {
  TestOptions o;
  auto st = LoadTomlText(
      "port = 1\n[extra]\nflag = true\nn = 3\nx = 2.5\ns = 'text'\nlist = ['a', 'b']\n", "t.toml",
      MakeSchema(&o));
  ASSERT_TRUE(st) << st.error().message();
  ASSERT_EQ(o.extra.size(), 5u);
  auto get = [&](const std::string& key) -> const Entry& {
    for (const auto& e : o.extra) {
      if (e.key == key) return e;
    }
    ADD_FAILURE() << "no entry " << key;
    return o.extra[0];
  };
  EXPECT_EQ(std::get<bool>(get("flag").value), true);
  EXPECT_EQ(get("flag").where, "t.toml:3");
  EXPECT_EQ(get("list").where, "t.toml:7");
  EXPECT_EQ(std::get<int64_t>(get("n").value), 3);
  EXPECT_EQ(std::get<double>(get("x").value), 2.5);
  EXPECT_EQ(std::get<std::string>(get("s").value), "text");
  EXPECT_EQ(std::get<std::vector<std::string>>(get("list").value),
            (std::vector<std::string>{"a", "b"}));
  EXPECT_FALSE(get("list").from_text);
}

TEST(TomlLoader, EntriesErrors) {
  TestOptions o;
  auto st = LoadTomlText("extra = 1\n", "t.toml", MakeSchema(&o));
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().message(), "t.toml:1: key 'extra': expected a table, found an integer");
  st = LoadTomlText("[extra]\nl = [1]\n", "t.toml", MakeSchema(&o));
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().message(),
            "t.toml:2: key 'extra.l': expected an array of strings, found an integer in it");
}

TEST(CommandLine, EntriesRepeatAfterTheFile) {
  const std::string path = core::testing::TempPath("e.toml");
  std::ofstream(path) << "[extra]\na = 1\n";
  TestOptions o;
  Schema schema = MakeSchema(&o);
  AppInfo info{"t", "test", "t 1", nullptr};
  std::vector<const char*> argv = {"t", "-c", path.c_str(), "--extra", "b=x=y", "--extra", "a=2"};
  auto out = ParseCommandLine(static_cast<int>(argv.size()), argv.data(), info, schema);
  ASSERT_FALSE(out.exit) << out.message;
  ASSERT_EQ(o.extra.size(), 3u);
  EXPECT_EQ(o.extra[0].key, "a");
  EXPECT_EQ(o.extra[1].key, "b");
  EXPECT_EQ(std::get<std::string>(o.extra[1].value), "x=y");
  EXPECT_TRUE(o.extra[1].from_text);
  EXPECT_EQ(o.extra[1].where, "--extra");
  EXPECT_EQ(std::get<std::string>(o.extra[2].value), "2");
  std::vector<const char*> bad = {"t", "--extra", "novalue"};
  TestOptions o2;
  Schema schema2 = MakeSchema(&o2);
  out = ParseCommandLine(static_cast<int>(bad.size()), bad.data(), info, schema2);
  EXPECT_TRUE(out.exit);
  EXPECT_EQ(out.exit_code, kExitUsage);
  EXPECT_EQ(out.message, "t: --extra: 'novalue' is not KEY=VALUE");
}

TEST(CommandLine, CheckHookRunsOnlyForCheckConfig) {
  TestOptions o;
  Schema schema = MakeSchema(&o);
  int checks = 0;
  AppInfo info{"t", "test", "t 1", nullptr};
  info.check = [&]() -> Status {
    ++checks;
    return Fail(Error::Config("service 'x': cannot import"));
  };
  std::vector<const char*> plain = {"t"};
  auto out = ParseCommandLine(1, plain.data(), info, schema);
  EXPECT_FALSE(out.exit);
  EXPECT_EQ(checks, 0);
  std::vector<const char*> check = {"t", "--check-config"};
  out = ParseCommandLine(2, check.data(), info, schema);
  EXPECT_EQ(checks, 1);
  EXPECT_TRUE(out.exit);
  EXPECT_EQ(out.exit_code, kExitConfig);
  EXPECT_EQ(out.message, "t: service 'x': cannot import");
}

}  // namespace
}  // namespace core::config
