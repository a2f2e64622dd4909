// rpyc-classicd's options: defaults, precedence (defaults < file < switches), and every error
// path with its exit status and message.

#include "daemons/classicd/classicd.h"

#include <cstdio>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <unistd.h>

#include "libcore/config/options.h"

namespace classicd {
namespace {

struct Parsed {
  Options o;
  core::config::CliOutcome outcome;
};

Parsed Parse(std::vector<std::string> args) {
  std::vector<const char*> argv = {"rpyc-classicd"};
  for (const auto& a : args) argv.push_back(a.c_str());
  Parsed p;
  p.outcome = ParseOptions(static_cast<int>(argv.size()), argv.data(), &p.o);
  return p;
}

// A TOML file that lives as long as the test.
class TomlFile {
 public:
  explicit TomlFile(const std::string& text) {
    char path[] = "/tmp/classicd_test_XXXXXX";
    const int fd = ::mkstemp(path);
    EXPECT_GE(fd, 0);
    ::close(fd);
    path_ = path;
    std::ofstream(path_) << text;
  }
  ~TomlFile() { std::remove(path_.c_str()); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

TEST(OptionsTest, DefaultsMatchRpycClassic) {
  Parsed p = Parse({});
  ASSERT_FALSE(p.outcome.exit) << p.outcome.message;
  EXPECT_EQ(p.o.effective_host(), "127.0.0.1");
  EXPECT_EQ(p.o.effective_port(), 18812);
  EXPECT_EQ(p.o.mode, Mode::kThreaded);
  EXPECT_EQ(p.o.registry_type, "UDP");
  EXPECT_EQ(p.o.registry_port, 18811);
  EXPECT_FALSE(p.o.quiet);
  EXPECT_EQ(p.o.idle_timeout, 0);
  EXPECT_EQ(p.o.frame_timeout, 120);  // on, like sshd's LoginGraceTime (see the man page)
}

TEST(OptionsTest, FrameTimeoutFromFileAndSwitch) {
  TomlFile f("frame_timeout = 30\n");
  Parsed p = Parse({"-c", f.path()});
  ASSERT_FALSE(p.outcome.exit) << p.outcome.message;
  EXPECT_EQ(p.o.frame_timeout, 30);
  p = Parse({"-c", f.path(), "--frame-timeout", "0"});  // the switch wins; 0 turns it off
  ASSERT_FALSE(p.outcome.exit) << p.outcome.message;
  EXPECT_EQ(p.o.frame_timeout, 0);
  TomlFile dashed("frame-timeout = 86400\n");
  p = Parse({"-c", dashed.path()});
  ASSERT_FALSE(p.outcome.exit) << p.outcome.message;
  EXPECT_EQ(p.o.frame_timeout, 86400);
}

TEST(OptionsTest, Ipv6AndTlsChangeTheDefaults) {
  Parsed p = Parse({"--ipv6", "--ssl-keyfile", "k.pem", "--ssl-certfile", "c.pem"});
  ASSERT_FALSE(p.outcome.exit) << p.outcome.message;
  EXPECT_EQ(p.o.effective_host(), "::1");
  EXPECT_EQ(p.o.effective_port(), 18821);
  p = Parse({"--ssl-keyfile", "k.pem", "--ssl-certfile", "c.pem", "-p", "0"});
  EXPECT_EQ(p.o.effective_port(), 0);
}

TEST(OptionsTest, ModeIsCaseInsensitive) {
  Parsed p = Parse({"-m", "FORKING"});
  ASSERT_FALSE(p.outcome.exit);
  EXPECT_EQ(p.o.mode, Mode::kForking);
}

TEST(OptionsTest, PrecedenceDefaultsFileCommandLine) {
  TomlFile f(
      "port = 2000\nhost = \"0.0.0.0\"\nquiet = true\nmax_connections = 7\n"
      "max-connections-per-peer = 2\nssl_keyfile = \"k\"\nssl_certfile = \"c\"\n");
  Parsed p = Parse({"-c", f.path(), "-p", "3000"});
  ASSERT_FALSE(p.outcome.exit) << p.outcome.message;
  EXPECT_EQ(p.o.port, 3000);       // switch over file
  EXPECT_EQ(p.o.host, "0.0.0.0");  // file over default
  EXPECT_TRUE(p.o.quiet);          // file
  EXPECT_EQ(p.o.max_connections, 7);
  EXPECT_EQ(p.o.max_connections_per_peer, 2);  // dashes and underscores name the same key
  EXPECT_EQ(p.o.idle_timeout, 0);              // default
  EXPECT_EQ(p.o.ssl_keyfile, "k");
}

TEST(OptionsTest, EverySwitchIsATomlKey) {
  Options o;
  for (const auto& f : MakeSchema(&o)) {
    EXPECT_FALSE(f.switches.empty()) << f.key;
    std::string dashed = f.key;
    for (char& c : dashed) c = c == '_' ? '-' : c;
    EXPECT_NE(f.switches.find("--" + dashed), std::string::npos) << f.key << " " << f.switches;
  }
}

struct ErrorCase {
  std::vector<std::string> args;
  std::string toml;  // non-empty: written to a file passed with -c first
  int exit_code;
  std::string message;  // a substring of the one line on stderr
};

// Each case exits with its code and a message containing its text (78: naming the file).
void ExpectErrors(const std::vector<ErrorCase>& cases) {
  for (const auto& c : cases) {
    std::vector<std::string> args;
    std::unique_ptr<TomlFile> file;
    if (!c.toml.empty()) {
      file = std::make_unique<TomlFile>(c.toml);
      args = {"-c", file->path()};
    }
    args.insert(args.end(), c.args.begin(), c.args.end());
    Parsed p = Parse(args);
    SCOPED_TRACE(c.message);
    EXPECT_TRUE(p.outcome.exit);
    EXPECT_EQ(p.outcome.exit_code, c.exit_code) << p.outcome.message;
    EXPECT_TRUE(p.outcome.to_stderr);
    EXPECT_NE(p.outcome.message.find(c.message), std::string::npos) << p.outcome.message;
    if (!c.toml.empty() && c.exit_code == 78) {
      EXPECT_NE(p.outcome.message.find(file->path()), std::string::npos) << p.outcome.message;
    }
  }
}

TEST(OptionsTest, EveryErrorPath) {
  const std::vector<ErrorCase> cases = {
      {{"--bogus"}, "", 64, "unknown switch '--bogus'"},
      {{"-p", "notaport"}, "", 64, "--port: expected a number 0-65535, got 'notaport'"},
      {{"-p", "70000"}, "", 64, "--port: expected a number 0-65535, got '70000'"},
      {{"-p", "-1"}, "", 64, "--port: expected a number 0-65535, got '-1'"},
      {{"-p"}, "", 64, "--port: expected a number 0-65535 (try --help)"},
      {{"-m", "spawn"},
       "",
       64,
       "--mode: expected one of threaded, threadpool, forking, oneshot, stdio, got 'spawn'"},
      {{"--registry-type", "SCTP"}, "", 64, "expected one of UDP, TCP, got 'SCTP'"},
      {{"--log-level", "trace"},
       "",
       64,
       "--log-level: expected one of error, warning, info, debug, got 'trace'"},
      {{"--vdb"}, "", 64, "obsolete upstream"},
      {{"--ssl-keyfile", "k"}, "", 64, "--ssl-keyfile requires --ssl-certfile"},
      {{"--ssl-certfile", "c"}, "", 64, "--ssl-certfile requires --ssl-keyfile"},
      {{"--ssl-cafile", "ca"}, "", 64, "--ssl-cafile requires --ssl-keyfile"},
      {{"--register", "--registry-type", "TCP"},
       "",
       64,
       "--registry-type TCP requires --registry-host"},
      {{"-m", "stdio", "--log", "stderr"}, "", 64, "cannot log to stderr"},
      {{"--max-connections", "0"}, "", 64, "--max-connections: expected a number 1-1000000"},
      {{"--unix-socket-mode", "999"}, "", 64, "is not octal"},
      {{"--frame-timeout", "86401"}, "", 64, "--frame-timeout: expected a number 0-86400"},
      {{"--frame-timeout", "soon"}, "", 64, "--frame-timeout: expected a number 0-86400"},
      // Cross-option rules broken by the file alone: 78, FILE:LINE and the key.
      {{}, "\nssl_keyfile = \"k\"\n", 78, ":2: key 'ssl_keyfile': requires ssl_certfile"},
      // The key as the file spells it.
      {{}, "\nssl-keyfile = \"k\"\n", 78, ":2: key 'ssl-keyfile': requires ssl_certfile"},
      {{}, "ssl_certfile = \"c\"\n", 78, ":1: key 'ssl_certfile': requires ssl_keyfile"},
      {{}, "ssl_cafile = \"ca\"\n", 78, ":1: key 'ssl_cafile': requires ssl_keyfile"},
      {{}, "ssl_crlfile = \"crl\"\n", 78, ":1: key 'ssl_crlfile': requires ssl_cafile"},
      {{}, "vdb = true\n", 78, ":1: key 'vdb': not supported"},
      {{}, "register = true\nregistry_type = \"TCP\"\n", 78, ":1: key 'register'"},
      {{}, "unix_socket_mode = \"999\"\n", 78, ":1: key 'unix_socket_mode': '999' is not octal"},
      {{"--register"}, "registry_type = \"TCP\"\n", 64, "--registry-type TCP requires"},
      {{"-m", "stdio"}, "log = \"stderr\"\n", 64, "cannot log to stderr"},
      {{}, "port = \"x\"\n", 78, ":1: key 'port': expected a number 0-65535, found a string"},
      {{}, "\nbogus = 1\n", 78, ":2: key 'bogus': unknown key"},
      {{}, "mode = \"spawn\"\n", 78, ":1: key 'mode': expected one of threaded,"},
      {{}, "mode = threaded\n", 78, "(a string must be quoted: mode = \"threaded\")"},
      {{}, "port = 99999\n", 78, ":1: key 'port': expected a number 0-65535, got 99999"},
      {{}, "port = -1\n", 78, ":1: key 'port': expected a number 0-65535, got -1"},
      {{}, "log-level = \"loud\"\n", 78, ":1: key 'log-level': expected one of error,"},
      {{},
       "max-connections-per-peer = 2\nmax_connections_per_peer = 3\n",
       78,
       ":2: key 'max_connections_per_peer': the same setting as 'max-connections-per-peer' on "
       "line 1; keep one"},
      // The allow-lists and the authenticator (issue 13).
      {{"--allow-from", "10.0.0.1/8"}, "", 64, "--allow-from: '10.0.0.1/8' has host bits set"},
      {{"--allow-from", "10.0.0.0/8,,::1"}, "", 64, "--allow-from: expected a list of strings"},
      {{}, "\nallow_from = [\"nowhere\"]\n", 78, ":2: key 'allow_from': 'nowhere' is not an"},
      {{}, "allow-from = \"10.0.0.0/8\"\n", 78, ":1: key 'allow-from': expected a list of strings"},
      {{}, "unix_allow_users = [\"no-such-user-rpyc\"]\n", 78, "unknown user 'no-such-user-rpyc'"},
      {{"--unix-allow-groups", "no-such-group-rpyc"}, "", 64, "unknown group 'no-such-group-rpyc'"},
      {{"--authenticator", "module"}, "", 64, "expected package.module:callable"},
      {{}, "authenticator = \"m:\"\n", 78, ":1: key 'authenticator': 'm:': expected"},
      {{"--authenticator", "m:f", "--ssl-keyfile", "k", "--ssl-certfile", "c"},
       "",
       64,
       "--authenticator cannot be combined with TLS"},
      {{},
       "authenticator = \"m:f\"\nmode = \"stdio\"\nlog = \"journal\"\n",
       78,
       ":1: key 'authenticator': authenticator needs a socket"},
      {{}, "port = \n", 78, ":1:"},  // TOML syntax
      {{}, "quiet = 1\n", 78, "key 'quiet': expected a boolean"},
      {{}, "\nframe_timeout = 90000\n", 78, ":2: key 'frame_timeout': expected a number 0-86400"},
      {{}, "frame_timeout = \"2m\"\n", 78, ":1: key 'frame_timeout': expected a number"},
  };
  ExpectErrors(cases);
}

TEST(OptionsTest, ProtocolKeysFromFileAndSwitches) {
  TomlFile f(
      "service = 'calc:CalculatorService'\n[protocol]\nallow_public_attrs = true\n"
      "safe_attrs = ['__len__']\nsync_request_timeout = 2.5\nexposed_prefix = 'remote_'\n");
  Parsed p = Parse({"-c", f.path(), "--protocol", "allow_pickle=yes", "--protocol",
                    "sync_request_timeout=none", "--protocol", "safe_attrs=__add__,__len__"});
  ASSERT_FALSE(p.outcome.exit) << p.outcome.message;
  EXPECT_TRUE(p.o.hosted());
  const auto& c = p.o.protocol_config;
  EXPECT_TRUE(c.allow_public_attrs);
  EXPECT_TRUE(c.allow_pickle);
  EXPECT_FALSE(c.allow_setattr);
  EXPECT_EQ(c.exposed_prefix, "remote_");
  EXPECT_EQ(c.safe_attrs, (std::vector<std::string>{"__add__", "__len__"}));  // the switch wins
  EXPECT_FALSE(c.sync_request_timeout.has_value());
  Parsed d = Parse({"--service", "calc:CalculatorService"});
  ASSERT_FALSE(d.outcome.exit) << d.outcome.message;
  EXPECT_EQ(d.o.protocol_config.sync_request_timeout, 30.0);
  EXPECT_EQ(d.o.protocol_config.safe_attrs, objspace::ProtocolConfig::DefaultSafeAttrs());
  EXPECT_FALSE(Parse({}).o.hosted());
}

TEST(OptionsTest, ExceptionKeysTakeBothValues) {
  // rpyc's vinegar keys: every value is honoured (no longer only the defaults).
  TomlFile f(
      "service = 'calc:CalculatorService'\n[protocol]\ninclude_local_traceback = false\n"
      "include_local_version = false\nimport_custom_exceptions = true\n"
      "instantiate_custom_exceptions = true\ninstantiate_oldstyle_exceptions = true\n"
      "propagate_SystemExit_locally = true\npropagate_KeyboardInterrupt_locally = false\n");
  Parsed p = Parse({"-c", f.path()});
  ASSERT_FALSE(p.outcome.exit) << p.outcome.message;
  const auto& c = p.o.protocol_config;
  EXPECT_FALSE(c.include_local_traceback);
  EXPECT_FALSE(c.include_local_version);
  EXPECT_TRUE(c.import_custom_exceptions);
  EXPECT_TRUE(c.instantiate_custom_exceptions);
  EXPECT_TRUE(c.instantiate_oldstyle_exceptions);
  EXPECT_TRUE(c.propagate_SystemExit_locally);
  EXPECT_FALSE(c.propagate_KeyboardInterrupt_locally);
  // The switches, the other way round (the last value of a key wins).
  Parsed s =
      Parse({"-c", f.path(), "--protocol", "include_local_traceback=yes", "--protocol",
             "include_local_version=on", "--protocol", "import_custom_exceptions=no", "--protocol",
             "instantiate_custom_exceptions=false", "--protocol",
             "instantiate_oldstyle_exceptions=0", "--protocol", "propagate_SystemExit_locally=off",
             "--protocol", "propagate_KeyboardInterrupt_locally=1"});
  ASSERT_FALSE(s.outcome.exit) << s.outcome.message;
  const objspace::ProtocolConfig defaults;
  const auto& d = s.o.protocol_config;
  EXPECT_EQ(d.include_local_traceback, defaults.include_local_traceback);
  EXPECT_EQ(d.include_local_version, defaults.include_local_version);
  EXPECT_EQ(d.import_custom_exceptions, defaults.import_custom_exceptions);
  EXPECT_EQ(d.instantiate_custom_exceptions, defaults.instantiate_custom_exceptions);
  EXPECT_EQ(d.instantiate_oldstyle_exceptions, defaults.instantiate_oldstyle_exceptions);
  EXPECT_EQ(d.propagate_SystemExit_locally, defaults.propagate_SystemExit_locally);
  EXPECT_EQ(d.propagate_KeyboardInterrupt_locally, defaults.propagate_KeyboardInterrupt_locally);
}

TEST(OptionsTest, ProtocolErrors) {
  const std::vector<ErrorCase> cases = {
      {{}, "service = 'm:S'\n[protocol]\nbogus = 1\n", 78, ":3: key 'protocol.bogus': unknown key"},
      {{},
       "service = 'm:S'\n[protocol]\nallow_pickle = 1\n",
       78,
       ":3: key 'protocol.allow_pickle': expected a boolean"},
      {{},
       "service = 'm:S'\n[protocol]\nsync_request_timeout = -1\n",
       78,
       ":3: key 'protocol.sync_request_timeout': must be more than 0"},
      {{},
       "service = 'm:S'\n[protocol]\npropagate_KeyboardInterrupt_locally = 0\n",
       78,
       ":3: key 'protocol.propagate_KeyboardInterrupt_locally': expected a boolean"},
      {{},
       "[protocol]\nallow_pickle = true\n",
       78,
       ":1: key 'protocol': applies to a hosted service"},
      {{"--service", "m:S", "--protocol", "allow_pickle"},
       "",
       64,
       "--protocol: expected KEY=VALUE, got 'allow_pickle'"},
      {{"--service", "m:S", "--protocol", "sync_request_timeout=soon"},
       "",
       64,
       "--protocol: key 'protocol.sync_request_timeout': expected a number of seconds"},
      {{"--protocol", "allow_pickle=true"}, "", 64, "--protocol applies to a hosted service"},
  };
  ExpectErrors(cases);
}

TEST(OptionsTest, HostedServiceInEveryModeAndRegistered) {
  for (const char* mode : {"threaded", "threadpool", "forking", "oneshot", "stdio"}) {
    Parsed p = Parse({"--service", "m:S", "-m", mode, "--logfile", "x", "--register"});
    EXPECT_FALSE(p.outcome.exit) << mode << ": " << p.outcome.message;
    EXPECT_TRUE(p.o.hosted() && p.o.register_server);
  }
}

TEST(OptionsTest, LoggerNameNamesTheServiceAndPort) {
  Parsed p = Parse({"-p", "18861"});
  EXPECT_EQ(LoggerName(p.o), "SLAVE/18861");
  EXPECT_EQ(LoggerName(p.o, "CALCULATOR"), "CALCULATOR/18861");
  EXPECT_EQ(LoggerName(p.o, "CALCULATOR", 40000), "CALCULATOR/40000");
  Parsed stdio = Parse({"-m", "stdio", "--logfile", "x"});
  EXPECT_EQ(LoggerName(stdio.o, "CALCULATOR", 40000), "CALCULATOR/stdio");
}

TEST(OptionsTest, MissingConfigFileIsAConfigError) {
  Parsed p = Parse({"-c", "/nonexistent/rpyc-classicd.toml"});
  EXPECT_TRUE(p.outcome.exit);
  EXPECT_EQ(p.outcome.exit_code, 78);
  EXPECT_NE(p.outcome.message.find("/nonexistent/rpyc-classicd.toml"), std::string::npos);
}

TEST(OptionsTest, HelpVersionCheckConfigExitZero) {
  for (const char* sw : {"--help", "--version", "--check-config"}) {
    Parsed p = Parse({sw});
    EXPECT_TRUE(p.outcome.exit) << sw;
    EXPECT_EQ(p.outcome.exit_code, 0) << sw;
    EXPECT_FALSE(p.outcome.to_stderr) << sw;
  }
  EXPECT_NE(Parse({"--version"}).outcome.message.find("rpyc-classicd "), std::string::npos);
  EXPECT_NE(Parse({"--help"}).outcome.message.find("--ssl-cafile"), std::string::npos);
}

TEST(OptionsTest, StdioLogsToTheFileOnlyOutsideSystemd) {
  Parsed p = Parse({"-m", "stdio", "--logfile", "/tmp/x.log"});
  ASSERT_FALSE(p.outcome.exit);
  ::unsetenv("JOURNAL_STREAM");
  EXPECT_EQ(MakeRunOptions(p.o).log.target, core::log::Target::kFile);
}

}  // namespace
}  // namespace classicd
