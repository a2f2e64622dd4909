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

TEST(Logging, LevelIsTheThreshold) {
  const std::string path = core::testing::TempPath("log_test_level.log");
  std::remove(path.c_str());
  Options o;
  o.file = path;
  o.level = *ParseLevel("info");
  o.target = Target::kStderr;
  auto logging = Logging::Create(o);
  ASSERT_TRUE(logging);
  Logger log = (*logging)->Get("L");
  log.Debug("hidden");
  log.Info("shown");
  (*logging)->SetThreshold(*ParseLevel("warning"));
  log.Info("now hidden");
  log.Warn("warned");
  (*logging)->SetThreshold(Threshold(true, Level::debug));  // -q: errors only, whatever the level
  log.Warn("quiet");
  const std::string text = ReadFile(path);
  EXPECT_EQ(text.find("hidden"), std::string::npos) << text;
  EXPECT_NE(text.find("INFO:L:shown"), std::string::npos) << text;
  EXPECT_NE(text.find("WARNING:L:warned"), std::string::npos) << text;
  EXPECT_EQ(text.find("quiet"), std::string::npos) << text;
  std::remove(path.c_str());
}

TEST(Logging, ParseLevel) {
  EXPECT_EQ(*ParseLevel("error"), Level::err);
  EXPECT_EQ(*ParseLevel("warning"), Level::warn);
  EXPECT_EQ(*ParseLevel("debug"), Level::debug);
  EXPECT_FALSE(ParseLevel("trace"));
  EXPECT_EQ(Threshold(true, Level::debug), Level::err);
  EXPECT_EQ(Threshold(false, Level::info), Level::info);
}

// spdlog would create a missing directory; a log file that is a directory is refused.
TEST(Logging, LogFileDirectoryMustExist) {
  const std::string dir = core::testing::TempPath("log_test_nodir");
  std::remove(dir.c_str());
  Options o;
  o.file = dir + "/x.log";
  o.target = Target::kStderr;
  auto logging = Logging::Create(o);
  ASSERT_FALSE(logging);
  EXPECT_EQ(logging.error().message(),
            "log file " + dir + "/x.log: directory " + dir + ": No such file or directory");
  EXPECT_FALSE(CheckLogFile(dir + "/x.log"));
  o.file = "/tmp";
  logging = Logging::Create(o);
  ASSERT_FALSE(logging);
  EXPECT_EQ(logging.error().message(), "log file /tmp: is a directory");
  EXPECT_TRUE(CheckLogFile(""));
  EXPECT_TRUE(CheckLogFile("/tmp/x.log"));
  EXPECT_TRUE(CheckLogFile("relative.log"));
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

TEST(Escape, PrintableTextIsKept) {
  EXPECT_EQ(Escape("SLAVE"), "SLAVE");
  EXPECT_EQ(Escape("fe80::1%eth0"), "fe80::1%eth0");
  EXPECT_EQ(Escape("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"),
            "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80");
  EXPECT_EQ(Escape(""), "");
}

TEST(Escape, LineBreaksCannotForgeLines) {
  const std::string forged = Escape("X\r\nWARNING:REGSRV/UDP/18811:forged");
  EXPECT_EQ(forged, "X\\r\\nWARNING:REGSRV/UDP/18811:forged");
  EXPECT_EQ(forged.find_first_of("\r\n"), std::string::npos);
  EXPECT_EQ(Escape("\t\x1b[31m\x7f"), "\\t\\x1b[31m\\x7f");
  EXPECT_EQ(Escape(std::string("a\0b", 3)), "a\\x00b");
}

TEST(Escape, BackslashIsDoubledSoEscapesAreUnambiguous) {
  EXPECT_EQ(Escape("a\\nb"), "a\\\\nb");
  EXPECT_NE(Escape("a\\nb"), Escape("a\nb"));
}

TEST(Escape, UnicodeControlsAndSeparatorsAndBadUtf8) {
  EXPECT_EQ(Escape("a\xc2\x85z"), "a\\u0085z");          // NEL
  EXPECT_EQ(Escape("a\xc2\x9bz"), "a\\u009bz");          // CSI
  EXPECT_EQ(Escape("a\xe2\x80\xa8z"), "a\\u2028z");      // LINE SEPARATOR
  EXPECT_EQ(Escape("a\xe2\x80\xa9z"), "a\\u2029z");      // PARAGRAPH SEPARATOR
  EXPECT_EQ(Escape("\xff\xfe"), "\\xff\\xfe");           // not UTF-8
  EXPECT_EQ(Escape("\xc3"), "\\xc3");                    // truncated sequence
  EXPECT_EQ(Escape("\xc0\x8a"), "\\xc0\\x8a");           // overlong newline
  EXPECT_EQ(Escape("\xed\xa0\x80"), "\\xed\\xa0\\x80");  // surrogate
}

}  // namespace
}  // namespace core::log
