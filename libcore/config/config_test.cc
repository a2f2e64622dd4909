#include <cstdio>
#include <fstream>
#include <functional>
#include <map>
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
      {"port = 'x'\n", "t.toml:1: key 'port': expected a number 0-65535, found a string"},
      {"\n\nport = 70000\n", "t.toml:3: key 'port': expected a number 0-65535, got 70000"},
      {"port = -1\n", "t.toml:1: key 'port': expected a number 0-65535, got -1"},
      {"listing = 1\n",
       "t.toml:1: key 'listing': expected a boolean (true/false/yes/no/on/off/1/0), found an "
       "integer"},
      {"mode = 'tls'\n", "t.toml:1: key 'mode': expected one of UDP, TCP, both, got 'tls'"},
      {"mode = 3\n", "t.toml:1: key 'mode': expected one of UDP, TCP, both, found an integer"},
      {"host = [1]\n", "t.toml:1: key 'host': expected a string, found an array"},
      {"port = 1.5\n", "t.toml:1: key 'port': expected a number 0-65535, found a float"},
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
  EXPECT_EQ(st.error().message(),
            "/nonexistent/x.toml: cannot open the configuration file: No such file or directory");
}

// A directory opens as a stream that reads as empty: the daemon started on its defaults.
TEST(TomlLoader, DirectoryIsAnError) {
  TestOptions o;
  auto st = LoadTomlFile("/", MakeSchema(&o));
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().message(), "/: is a directory, not a configuration file");
}

TEST(TomlLoader, EveryProblemInFileOrder) {
  TestOptions o;
  // toml++ holds keys sorted by name; the report follows the file.
  auto st = LoadTomlText("zzz = 1\nport = 'x'\nmode = tcp\naaa = 2\nport2 = = 3\n", "t.toml",
                         MakeSchema(&o));
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().message(),
            "t.toml:1: key 'zzz': unknown key\n"
            "t.toml:2: key 'port': expected a number 0-65535, found a string\n"
            "t.toml:3:9: Error while parsing boolean: expected 'true', saw 'tc' (a string must "
            "be quoted: mode = \"tcp\")\n"
            "t.toml:4: key 'aaa': unknown key\n"
            "t.toml:5:9: Error while parsing value: could not determine value type");
}

TEST(TomlLoader, UnquotedWordHintsAtQuotes) {
  TestOptions o;
  auto st = LoadTomlText("host = localhost # comment\n", "t.toml", MakeSchema(&o));
  ASSERT_FALSE(st);
  EXPECT_NE(st.error().message().find("(a string must be quoted: host = \"localhost\")"),
            std::string::npos)
      << st.error().message();
  // A bad number is not a forgotten quote.
  st = LoadTomlText("port = 80x\n", "t.toml", MakeSchema(&o));
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().message().find("quoted"), std::string::npos) << st.error().message();
}

struct SpellingOptions {
  int64_t max_connections = 1;
  std::string logfile;
};

TEST(TomlLoader, KeySpelledTwoWaysIsAnError) {
  SpellingOptions o;
  const Schema schema = {Int("max_connections", "", "", &o.max_connections, 1, 100),
                         String("logfile", "", "", &o.logfile),
                         String("file", "", "alias", &o.logfile)};
  auto st = LoadTomlText("max-connections = 2\nmax_connections = 3\n", "t.toml", schema);
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().message(),
            "t.toml:2: key 'max_connections': the same setting as 'max-connections' on line 1; "
            "keep one");
  st = LoadTomlText("file = 'a'\n\nlogfile = 'b'\n", "t.toml", schema);
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().message(),
            "t.toml:3: key 'logfile': the same setting as 'file' on line 1; keep one");
  // Messages name the key as the file spells it.
  st = LoadTomlText("max-connections = 0\n", "t.toml", schema);
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().message(),
            "t.toml:1: key 'max-connections': expected a number 1-100, got 0");
}

TEST(DumpToml, ReadsBackToTheSameValues) {
  TestOptions o;
  o.mode = "both";
  o.port = 0;
  o.listing = true;
  o.host = "a \"quoted\" \\ path\twith tab";
  const std::string dumped = DumpToml(MakeSchema(&o));
  EXPECT_EQ(dumped,
            "mode = \"both\"\nport = 0\nlisting = true\nquiet = false\n"
            "host = \"a \\\"quoted\\\" \\\\ path\\u0009with tab\"\n");
  TestOptions back;
  back.port = 9;
  auto st = LoadTomlText(dumped, "dump", MakeSchema(&back));
  ASSERT_TRUE(st) << st.error().message();
  EXPECT_EQ(back.mode, o.mode);
  EXPECT_EQ(back.port, 0);
  EXPECT_TRUE(back.listing);
  EXPECT_EQ(back.host, o.host);
  EXPECT_EQ(DumpToml(MakeSchema(&back)), dumped);
}

TEST(DumpToml, SentinelIsACommentAndAliasesAreLeftOut) {
  SpellingOptions o;
  o.max_connections = -1;
  const Schema schema = {Unset(Int("max_connections", "", "", &o.max_connections, 1, 100), "10"),
                         String("logfile", "", "", &o.logfile),
                         String("file", "", "alias", &o.logfile)};
  EXPECT_EQ(DumpToml(schema), "# max-connections: not set (10)\nlogfile = \"\"\n");
  o.max_connections = 7;
  EXPECT_EQ(DumpToml(schema), "max-connections = 7\nlogfile = \"\"\n");
}

class CliTest : public ::testing::Test {
 protected:
  CliOutcome Parse(std::vector<std::string> args, bool opt_in = false) {
    args.insert(args.begin(), "prog");
    std::vector<const char*> argv;
    for (const auto& a : args) argv.push_back(a.c_str());
    AppInfo info;
    info.name = "prog";
    info.description = "test program";
    info.version = "prog 1.0";
    info.default_config = default_config_;
    info.check = check_;
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
  std::string default_config_;
  std::function<Status()> check_;
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

TEST(TomlLoader, ReportsTheSpellingOfEachKey) {
  SpellingOptions o;
  const Schema schema = {Int("max_connections", "", "", &o.max_connections, 1, 100)};
  std::map<std::string, std::string> spellings;
  ASSERT_TRUE(LoadTomlText("max-connections = 2\n", "t.toml", schema, nullptr, &spellings));
  EXPECT_EQ(spellings["max_connections"], "max-connections");
}

TEST_F(CliTest, LastOfARepeatedSwitchCounts) {
  ASSERT_FALSE(Parse({"-p", "1", "--port", "2"}).exit);
  EXPECT_EQ(o_.port, 2);
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
      {{"--bogus"}, kExitUsage, "prog: unknown switch '--bogus' (try --help)"},
      {{"--port", "x"}, kExitUsage, "prog: --port: expected a number 0-65535, got 'x'"},
      {{"--port", "65536"}, kExitUsage, "prog: --port: expected a number 0-65535, got '65536'"},
      {{"--port"}, kExitUsage, "prog: --port: expected a number 0-65535 (try --help)"},
      {{"-m", "sctp"}, kExitUsage, "prog: --mode: expected one of UDP, TCP, both, got 'sctp'"},
      {{"--listing=maybe"}, kExitUsage, "prog: --listing: expected a boolean"},
      {{"extra"}, kExitUsage, "prog: unexpected argument 'extra' (try --help)"},
      {{"-c", bad}, kExitConfig, ":1: key 'port': expected a number 0-65535, found a string"},
      {{"-c", "/"}, kExitConfig, "prog: /: is a directory, not a configuration file"},
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
      {{"--port", "1\n2"}, kExitUsage, "got '1\\n2'"},
      {{"-m", "a\r\tb"}, kExitUsage, "got 'a\\x0d\\x09b'"},
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
            "prog: --quiet: expected a boolean (true/false/yes/no/on/off/1/0), got 'sometimes'");
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
  for (const char* v : {"--version", "-v"}) {
    auto version = Parse({v});
    EXPECT_EQ(version.exit_code, 0);
    EXPECT_EQ(version.message, "prog 1.0\n");
  }
  const std::string good = WriteToml("port = 7\n");
  auto check = Parse({"-c", good, "--check-config"});
  EXPECT_TRUE(check.exit);
  EXPECT_EQ(check.exit_code, 0);
  EXPECT_NE(check.message.find("configuration OK"), std::string::npos);
}

TEST_F(CliTest, ValidateHookGivesConfigExit) {
  std::vector<std::string> args = {"prog"};
  std::vector<const char*> argv = {args[0].c_str()};
  AppInfo info;
  info.name = "prog";
  info.validate = [](const Origins&) { return Status(Fail(Error::Config("bad combination"))); };
  auto out = ParseCommandLine(1, argv.data(), info, schema_);
  EXPECT_EQ(out.exit_code, kExitConfig);
  EXPECT_EQ(out.message, "prog: bad combination");
}

TEST_F(CliTest, ValidateSeesWhereEachValueCameFrom) {
  const std::string path = WriteToml("\nport = 5\nmode = 'both'\n");
  Origins seen;
  AppInfo info;
  info.name = "prog";
  info.validate = [&seen](const Origins& o) {
    seen = o;
    return Status();
  };
  std::vector<std::string> args = {"prog", "-c", path, "-m", "tcp"};
  std::vector<const char*> argv;
  for (const auto& a : args) argv.push_back(a.c_str());
  auto out = ParseCommandLine(static_cast<int>(argv.size()), argv.data(), info, schema_);
  EXPECT_FALSE(out.exit) << out.message;
  EXPECT_EQ(seen.FileLine("port"), path + ":2");
  EXPECT_EQ(seen.FileLine("mode"), "");     // the switch overrides the file
  EXPECT_EQ(seen.FileLine("listing"), "");  // a default
  EXPECT_EQ(seen.Written("port"), "port");
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
  AppInfo info;
  info.name = "t";
  info.description = "test";
  info.version = "t 1";
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
  EXPECT_EQ(out.message, "t: --extra: expected KEY=VALUE, got 'novalue'");
}

TEST(TomlLoader, ListIsAnArrayOfStrings) {
  std::vector<std::string> list = {"default"};
  Schema schema = {List("allow", "--allow", "blocks", &list)};
  ASSERT_TRUE(LoadTomlText("allow = ['10.0.0.0/8', '::1/128']\n", "t.toml", schema));
  EXPECT_EQ(list, (std::vector<std::string>{"10.0.0.0/8", "::1/128"}));
  ASSERT_TRUE(LoadTomlText("allow = []\n", "t.toml", schema));
  EXPECT_TRUE(list.empty());
  auto st = LoadTomlText("\nallow = '10.0.0.0/8'\n", "t.toml", schema);
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().message(),
            "t.toml:2: key 'allow': expected a list of strings, found a string");
  st = LoadTomlText("allow = ['a', 1]\n", "t.toml", schema);
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().message(),
            "t.toml:1: key 'allow': expected a list of strings, found an integer in it");
  list = {"a", "b,c"};
  EXPECT_EQ(TomlValue(schema[0]), "[\"a\", \"b,c\"]");
  EXPECT_EQ(DumpToml(schema), "allow = [\"a\", \"b,c\"]\n");
}

TEST(CommandLine, ListSwitchesReplaceTheFilesList) {
  const std::string path = core::testing::TempPath("l.toml");
  std::ofstream(path) << "allow = ['from-file']\n";
  AppInfo info;
  info.name = "t";
  info.description = "test";
  info.version = "t 1";
  std::vector<std::string> list;
  Schema schema = {List("allow", "--allow", "blocks", &list)};
  std::vector<const char*> argv = {"t", "-c", path.c_str()};
  auto out = ParseCommandLine(static_cast<int>(argv.size()), argv.data(), info, schema);
  ASSERT_FALSE(out.exit) << out.message;
  EXPECT_EQ(list, (std::vector<std::string>{"from-file"}));
  argv = {"t", "-c", path.c_str(), "--allow", "a,b", "--allow", "c"};
  out = ParseCommandLine(static_cast<int>(argv.size()), argv.data(), info, schema);
  ASSERT_FALSE(out.exit) << out.message;
  EXPECT_EQ(list, (std::vector<std::string>{"a", "b", "c"}));
  argv = {"t", "--allow", "a,,b"};
  out = ParseCommandLine(static_cast<int>(argv.size()), argv.data(), info, schema);
  EXPECT_TRUE(out.exit);
  EXPECT_EQ(out.exit_code, kExitUsage);
  EXPECT_EQ(out.message, "t: --allow: expected a list of strings, got 'a,,b'");
}

TEST(CommandLine, CheckHookRunsOnlyForCheckConfig) {
  TestOptions o;
  Schema schema = MakeSchema(&o);
  int checks = 0;
  AppInfo info;
  info.name = "t";
  info.description = "test";
  info.version = "t 1";
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

TEST_F(CliTest, EveryFileErrorIsALineOfItsOwn) {
  const std::string path = WriteToml("bogus = 1\nport = 'x'\n");
  auto out = Parse({"-c", path});
  EXPECT_EQ(out.exit_code, kExitConfig);
  EXPECT_EQ(out.message, "prog: " + path + ":1: key 'bogus': unknown key\nprog: " + path +
                             ":2: key 'port': expected a number 0-65535, found a string");
}

TEST_F(CliTest, LogLineJoinsTheErrorsOfAFile) {
  const std::string path = WriteToml("bogus = 1\nport = 'x'\n");
  EXPECT_EQ(LogLine(Parse({"-c", path})), "prog: " + path +
                                              ":1: key 'bogus': unknown key; prog: " + path +
                                              ":2: key 'port': expected a number 0-65535, found a "
                                              "string");
}

TEST_F(CliTest, TypedHelpShowsWhatAnUnsetSentinelMeans) {
  o_.port = -1;
  schema_[1] = Unset(Int("port", "-p,--port", "port", &o_.port, 0, 65535), "18812");
  const std::string typed = Parse({"--help"}, true).message;
  EXPECT_NE(typed.find("[default: 18812]"), std::string::npos) << typed;
  EXPECT_EQ(typed.find("-1"), std::string::npos) << typed;
  EXPECT_EQ(Parse({"-p", "-1"}).exit_code, kExitUsage);
}

TEST_F(CliTest, DumpConfigMergesDefaultsFileAndSwitches) {
  const std::string path = WriteToml("port = 5\nmode = 'both'\n");
  auto out = Parse({"-c", path, "--host", "::", "--dump-config"});
  ASSERT_TRUE(out.exit);
  EXPECT_EQ(out.exit_code, kExitOk);
  EXPECT_FALSE(out.to_stderr);
  EXPECT_EQ(out.message,
            "# prog --dump-config: the effective configuration (defaults < file < switches)\n"
            "mode = \"both\"\nport = 5\nlisting = false\nquiet = false\nhost = \"::\"\n");
  // Fed back with -c, the same dump.
  std::ofstream(path) << out.message;
  TestOptions fresh;
  o_ = fresh;
  EXPECT_EQ(Parse({"-c", path, "--dump-config"}).message, out.message);
}

TEST_F(CliTest, DefaultConfigIsReadWhenItExistsAndNoOtherIsGiven) {
  default_config_ = core::testing::TempPath("cli_default.toml");
  auto out = Parse({});  // absent: the defaults
  EXPECT_FALSE(out.exit) << out.message;
  EXPECT_EQ(out.config_path, "");
  std::ofstream(default_config_) << "port = 44\n";
  out = Parse({});
  EXPECT_FALSE(out.exit) << out.message;
  EXPECT_EQ(out.config_path, default_config_);
  EXPECT_EQ(o_.port, 44);
  o_.port = 18811;
  out = Parse({"-c", ""});  // none at all
  EXPECT_FALSE(out.exit) << out.message;
  EXPECT_EQ(o_.port, 18811);
  const std::string other = WriteToml("port = 45\n");
  EXPECT_FALSE(Parse({"-c", other}).exit);  // -c replaces it
  EXPECT_EQ(o_.port, 45);
  std::ofstream(default_config_) << "port = 'x'\n";  // present but broken: an error
  out = Parse({});
  EXPECT_EQ(out.exit_code, kExitConfig);
  EXPECT_NE(out.message.find(default_config_ + ":1: key 'port'"), std::string::npos) << out.message;
  std::remove(default_config_.c_str());
}

TEST_F(CliTest, CheckConfigRunsTheCheckHook) {
  check_ = [] { return Status(Fail(Error::Io("key file /k.pem: No such file or directory"))); };
  auto out = Parse({"--check-config"});
  EXPECT_EQ(out.exit_code, kExitConfig);
  EXPECT_EQ(out.message, "prog: key file /k.pem: No such file or directory");
  EXPECT_FALSE(Parse({}).exit);  // a start does not run it here (it opens the files itself)
}

TEST_F(CliTest, EntriesErrorsComeInFileOrderWithTheKeyAsWritten) {
  const std::string path =
      WriteToml("bogus = 1\nport = 'x'\n[extra]\nok = 1\nl = [1]\nd = 1970-01-01\n");
  auto out = Parse({"-c", path});
  EXPECT_EQ(out.exit_code, kExitConfig);
  EXPECT_EQ(out.message,
            "prog: " + path + ":1: key 'bogus': unknown key\nprog: " + path +
                ":2: key 'port': expected a number 0-65535, found a string\nprog: " + path +
                ":5: key 'extra.l': expected an array of strings, found an integer "
                "in it\nprog: " +
                path + ":6: key 'extra.d': unsupported value, found a date/time");
  // An inline table, a table spelled with '-' for '_' and named as written.
  schema_.back() = Entries("extra_table", "--extra-table", "extra", &o_.extra);
  const std::string spelled = WriteToml("extra-table = { l = [true] }\nport = 'x'\n");
  EXPECT_EQ(Parse({"-c", spelled}).message,
            "prog: " + spelled +
                ":1: key 'extra-table.l': expected an array of strings, found a boolean in "
                "it\nprog: " +
                spelled + ":2: key 'port': expected a number 0-65535, found a string");
  const std::string twice = WriteToml("extra_table = {}\n[extra-table]\n");
  EXPECT_EQ(Parse({"-c", twice}).exit_code, kExitConfig);
}

TEST_F(CliTest, EntriesSwitchFollowsTheTypedHelpAndErrorTexts) {
  const std::string help = Parse({"--help"}, true).message;
  EXPECT_NE(help.find("--extra KEY=VALUE"), std::string::npos) << help;
  EXPECT_EQ(help.find("[default: ]"), std::string::npos) << help;
  auto out = Parse({"--extra"});
  EXPECT_EQ(out.exit_code, kExitUsage);
  EXPECT_EQ(out.message, "prog: --extra: expected KEY=VALUE (try --help)");
  out = Parse({"--extra", "=1"});
  EXPECT_EQ(out.exit_code, kExitUsage);
  EXPECT_EQ(out.message, "prog: --extra: expected KEY=VALUE, got '=1'");
}

TEST_F(CliTest, DumpConfigWritesEntriesAsATableThatReadsBack) {
  schema_.back().typed_entry = [](const Entry& e) -> Entry::Value {
    if (e.key == "flag") return std::get<std::string>(e.value) == "yes";
    return e.value;
  };
  const std::string path = WriteToml(
      "port = 5\n[extra]\nn = 3\nx = 3.0\ns = 'a\"b'\nlist = ['a', 'b']\nflag = false\n"
      "\"odd key\" = 1\n");
  auto out = Parse({"-c", path, "--extra", "flag=yes", "--extra", "t=text", "--dump-config"});
  ASSERT_TRUE(out.exit);
  EXPECT_EQ(out.exit_code, kExitOk) << out.message;
  EXPECT_EQ(out.message,
            "# prog --dump-config: the effective configuration (defaults < file < switches)\n"
            "mode = \"UDP\"\nport = 5\nlisting = false\nquiet = false\nhost = \"0.0.0.0\"\n"
            "\n[extra]\nflag = true\nlist = [\"a\", \"b\"]\nn = 3\n\"odd key\" = 1\n"
            "s = \"a\\\"b\"\nt = \"text\"\nx = 3.0\n");
  // Fed back with -c, the same dump, and the same entries.
  std::ofstream(path) << out.message;
  o_ = TestOptions{};
  EXPECT_EQ(Parse({"-c", path, "--dump-config"}).message, out.message);
  ASSERT_EQ(o_.extra.size(), 7u);
  EXPECT_EQ(std::get<bool>(o_.extra[0].value), true);
  EXPECT_EQ(std::get<double>(o_.extra[6].value), 3.0);
}

}  // namespace
}  // namespace core::config
