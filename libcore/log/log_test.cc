#include "libcore/log/log.h"

#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>

#include <gtest/gtest.h>

#include "libcore/testing/temp_path.h"

namespace core::log {
namespace {

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

TEST(Logging, FileLinesUseTheReferenceStyle) {
  const std::string path = core::testing::TempPath("log_test.log");
  std::remove(path.c_str());
  Options o;
  o.file = path;
  o.target = Target::kStderr;
  auto logging = Logging::Create(o);
  ASSERT_TRUE(logging) << logging.error().message();
  Logger log = (*logging)->Get("REGSRV/UDP/18811");
  log.Debug("registering {}:{} as {}", "127.0.0.1", 18861, "MY");
  log.Log(Level::warn, {{"RPYC_PEER", "127.0.0.1:5"}}, "bad {}", "magic");
  const std::string text = ReadFile(path);
  EXPECT_NE(text.find(" DEBUG:REGSRV/UDP/18811:registering 127.0.0.1:18861 as MY\n"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find(" WARNING:REGSRV/UDP/18811:bad magic\n"), std::string::npos) << text;
  std::remove(path.c_str());
}

TEST(Logging, ReopenFollowsLogrotate) {
  const std::string path = core::testing::TempPath("log_test_rot.log");
  const std::string moved = path + ".1";
  std::remove(path.c_str());
  Options o;
  o.file = path;
  o.target = Target::kStderr;
  auto logging = Logging::Create(o);
  ASSERT_TRUE(logging);
  Logger log = (*logging)->Get("T");
  log.Info("before");
  ASSERT_EQ(std::rename(path.c_str(), moved.c_str()), 0);
  ASSERT_TRUE((*logging)->Reopen());
  log.Info("after");
  EXPECT_NE(ReadFile(moved).find("before"), std::string::npos);
  EXPECT_EQ(ReadFile(moved).find("after"), std::string::npos);
  EXPECT_NE(ReadFile(path).find("INFO:T:after"), std::string::npos);
  std::remove(path.c_str());
  std::remove(moved.c_str());
}

TEST(Logging, QuietKeepsErrorsOnly) {
  const std::string path = core::testing::TempPath("log_test_quiet.log");
  std::remove(path.c_str());
  Options o;
  o.file = path;
  o.quiet = true;
  o.target = Target::kStderr;
  auto logging = Logging::Create(o);
  ASSERT_TRUE(logging);
  Logger log = (*logging)->Get("Q");
  EXPECT_FALSE(log.enabled(Level::warn));
  log.Warn("dropped");
  log.Error("kept");
  const std::string text = ReadFile(path);
  EXPECT_EQ(text.find("dropped"), std::string::npos);
  EXPECT_NE(text.find("ERROR:Q:kept"), std::string::npos);
  std::remove(path.c_str());
}

TEST(Logging, BadFileIsAnError) {
  Options o;
  o.file = "/dev/null/x.log";
  auto logging = Logging::Create(o);
  ASSERT_FALSE(logging);
  EXPECT_EQ(logging.error().code(), Error::Code::kIo);
}

TEST(Logging, ParseTarget) {
  EXPECT_EQ(*ParseTarget("journal"), Target::kJournal);
  EXPECT_EQ(*ParseTarget("stderr"), Target::kStderr);
  EXPECT_FALSE(ParseTarget("syslog"));
}

TEST(RateLimit, BurstThenSuppressThenReopen) {
  RateLimit rl(2, 10.0);
  EXPECT_TRUE(rl.Allow(0));
  EXPECT_TRUE(rl.Allow(1));
  EXPECT_FALSE(rl.Allow(2));
  EXPECT_FALSE(rl.Allow(3));
  EXPECT_EQ(rl.TakeSuppressed(), 2u);
  EXPECT_TRUE(rl.Allow(10.5));
  EXPECT_EQ(rl.TakeSuppressed(), 0u);
}

}  // namespace
}  // namespace core::log
