#include "daemons/classicd/classicd.h"

#include <cstdio>
#include <fstream>
#include <sstream>
#include <vector>

#include <gtest/gtest.h>
#include <unistd.h>

#include "daemons/classicd/log.h"

namespace classicd {
namespace {

CommandLine Parse(std::vector<const char*> args) {
  args.insert(args.begin(), "rpyc-classicd");
  return ParseCommandLine(static_cast<int>(args.size()), args.data());
}

TEST(CommandLineTest, DefaultsMatchRpycClassic) {
  CommandLine cl = Parse({});
  ASSERT_TRUE(cl.options.has_value());
  EXPECT_EQ(cl.options->host, "127.0.0.1");
  EXPECT_EQ(cl.options->port, 18812);
  EXPECT_EQ(cl.options->mode, core::server::Mode::kThreaded);
  EXPECT_FALSE(cl.options->quiet);
  EXPECT_TRUE(cl.options->logfile.empty());
}

TEST(CommandLineTest, AllSwitches) {
  CommandLine cl =
      Parse({"--host", "0.0.0.0", "-p", "1234", "-m", "THREADED", "-q", "--logfile", "/tmp/x"});
  ASSERT_TRUE(cl.options.has_value());
  EXPECT_EQ(cl.options->host, "0.0.0.0");
  EXPECT_EQ(cl.options->port, 1234);
  EXPECT_TRUE(cl.options->quiet);
  EXPECT_EQ(cl.options->logfile, "/tmp/x");
}

TEST(CommandLineTest, Ipv6DefaultsToLoopback) {
  CommandLine cl = Parse({"--ipv6"});
  ASSERT_TRUE(cl.options.has_value());
  EXPECT_EQ(cl.options->host, "::1");
}

TEST(CommandLineTest, UsageErrorsExitWithStatus2) {
  EXPECT_EQ(Parse({"-p", "notaport"}).exit_status, 2);
  EXPECT_EQ(Parse({"-p", "70000"}).exit_status, 2);
  EXPECT_EQ(Parse({"--bogus"}).exit_status, 2);
  EXPECT_EQ(Parse({"-m", "spawn"}).exit_status, 2);
  CommandLine cl = Parse({"-m", "forking"});  // a real mode, not implemented yet
  EXPECT_FALSE(cl.options.has_value());
  EXPECT_EQ(cl.exit_status, 2);
}

TEST(CommandLineTest, HelpAndVersionExitZero) {
  CommandLine cl = Parse({"--version"});
  EXPECT_FALSE(cl.options.has_value());
  EXPECT_EQ(cl.exit_status, 0);
  cl = Parse({"--help"});
  EXPECT_FALSE(cl.options.has_value());
  EXPECT_EQ(cl.exit_status, 0);
  EXPECT_NE(VersionText().find("rpyc-classicd "), std::string::npos);
}

// Logs through a logger writing to a temporary file; returns the file's text.
template <typename Fn>
std::string LogToFile(LogOptions opts, Fn fn) {
  char path[] = "/tmp/classicd_log_testXXXXXX";
  const int fd = ::mkstemp(path);
  EXPECT_GE(fd, 0);
  ::close(fd);
  opts.logfile = path;
  std::string error;
  auto log = MakeLogger(opts, &error);
  EXPECT_TRUE(error.empty()) << error;
  fn(*log);
  log->flush();
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  std::remove(path);
  return text.str();
}

TEST(LogTest, LinesLookLikeTheReference) {
  LogOptions opts;
  opts.name = "SLAVE/18812";
  const std::string s = LogToFile(opts, [](spdlog::logger& log) {
    SetThreadName("Conn-7");
    log.info("accepted {} with fd {}", "('127.0.0.1', 41428)", 4);
    log.debug("dbg");
    SetThreadName("MainThread");
    log.warn("careful");
  });
  // "Nov 26 11:42:48 INFO SLAVE/18812[Conn-7]: accepted ('127.0.0.1', 41428) with fd 4"
  EXPECT_NE(s.find(" INFO SLAVE/18812[Conn-7]: accepted ('127.0.0.1', 41428) with fd 4\n"),
            std::string::npos)
      << s;
  EXPECT_NE(s.find(" DEBUG SLAVE/18812[Conn-7]: dbg\n"), std::string::npos) << s;
  EXPECT_NE(s.find(" WARNING SLAVE/18812[MainThread]: careful\n"), std::string::npos) << s;
  EXPECT_EQ(s.find(" INFO"), 15u) << "timestamp like 'Nov 26 11:42:48': " << s;
}

TEST(LogTest, QuietLogsErrorsOnly) {
  LogOptions opts;
  opts.name = "SLAVE/1";
  opts.quiet = true;
  const std::string s = LogToFile(opts, [](spdlog::logger& log) {
    log.info("hidden");
    log.error("shown");
  });
  EXPECT_EQ(s.find("hidden"), std::string::npos);
  EXPECT_NE(s.find("ERROR SLAVE/1[MainThread]: shown"), std::string::npos);
}

TEST(LogTest, UnopenableLogFileFallsBackToStderr) {
  LogOptions opts;
  opts.name = "SLAVE/1";
  opts.logfile = "/dev/null/y.log";  // a path under a file: cannot exist
  std::string error;
  auto log = MakeLogger(opts, &error);
  ASSERT_NE(log, nullptr);
  EXPECT_FALSE(error.empty());
}

}  // namespace
}  // namespace classicd
