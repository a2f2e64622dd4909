#include "libcore/dnssd/publisher.h"

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <optional>
#include <thread>

#include <fcntl.h>
#include <gtest/gtest.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include "libcore/testing/run_loop.h"
#include "libcore/testing/temp_path.h"

extern char** environ;  // NOLINT(readability-redundant-declaration): for posix_spawn

namespace core::dnssd {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

// Runs `argv` with stdout and stderr to `log`; -1 when it cannot start.
pid_t Spawn(std::vector<std::string> args, const std::string& log) {
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 1, log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
  posix_spawn_file_actions_adddup2(&fa, 1, 2);
  pid_t pid = -1;
  int rc = posix_spawnp(&pid, argv[0], &fa, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  return rc == 0 ? pid : -1;
}

void Reap(pid_t& pid) {
  if (pid <= 0) return;
  kill(pid, SIGTERM);
  bool gone =
      testing::Eventually([&] { return waitpid(pid, nullptr, WNOHANG) == pid; }, seconds(5));
  if (!gone) {
    kill(pid, SIGKILL);
    waitpid(pid, nullptr, 0);
  }
  pid = -1;
}

std::string Capture(const std::string& cmd) {
  std::string out;
  FILE* p = popen(cmd.c_str(), "r");  // NOLINT(cert-env33-c): a fixed test command
  if (p == nullptr) return out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  pclose(p);
  return out;
}

bool Have(const char* path) { return access(path, X_OK) == 0; }

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// libdbus reads DBUS_SYSTEM_BUS_ADDRESS once per process, so every test of this process uses one
// bus path, set before any Avahi client exists; a test that wants a bus starts a dbus-daemon
// there, the others find nothing (Avahi absent). ctest runs each test in its own process.
const std::string& BusPath() {
  static const std::string path = [] {
    std::string dir = ::testing::TempDir() + "rpyc-dnssd-bus." + std::to_string(getpid());
    std::filesystem::create_directories(dir);
    std::string p = dir + "/bus";
    setenv("DBUS_SYSTEM_BUS_ADDRESS", ("unix:path=" + p).c_str(), 1);
    return p;
  }();
  static const bool cleanup = [] {
    return std::atexit([] {
             std::error_code ec;
             std::filesystem::remove_all(std::filesystem::path(path).parent_path(), ec);
           }) == 0;
  }();
  (void)cleanup;
  return path;
}

// A private system bus (its own dbus-daemon on a socket in a temp dir) and an avahi-daemon in a
// private network namespace with only loopback (multicast on), in a private mount namespace
// whose /run/avahi-daemon is a tmpfs (its pid file and socket). The test process talks to it
// through DBUS_SYSTEM_BUS_ADDRESS; nothing touches the machine's own bus or Avahi.
class PrivateAvahi {
 public:
  ~PrivateAvahi() { Stop(); }

  // Empty when it is up; otherwise why not (the test skips with it).
  std::string StartBus() {
    dir_ = testing::TempPath("avahi");
    std::filesystem::remove_all(dir_);
    std::filesystem::remove(BusPath());
    std::filesystem::create_directories(dir_);
    // The configurations the e2e tests use too (tests/e2e/avahi_support.py).
    std::string bus_conf = ReadFile(RPYC_DNSSD_TESTDATA "/private-bus.conf");
    bus_conf.replace(bus_conf.find("@BUS@"), 5, BusPath());
    std::ofstream(dir_ + "/dbus.conf") << bus_conf;
    std::ofstream(dir_ + "/avahi.conf") << ReadFile(RPYC_DNSSD_TESTDATA "/private-avahi.conf");
    dbus_ = Spawn({"dbus-daemon", "--nofork", "--config-file=" + dir_ + "/dbus.conf"},
                  dir_ + "/dbus.log");
    if (dbus_ < 0) return "cannot run dbus-daemon";
    if (!testing::Eventually([&] { return std::filesystem::exists(BusPath()); }, seconds(10))) {
      return "dbus-daemon did not start (" + dir_ + "/dbus.log)";
    }
    return {};
  }

  std::string StartAvahi() {
    std::string script =
        "set -e; mkdir -p /run/avahi-daemon; mount -t tmpfs tmpfs /run/avahi-daemon; "
        "ip link set lo up; ip link set lo multicast on; ip route add 224.0.0.0/4 dev lo; "
        "exec avahi-daemon -f " +
        dir_ + "/avahi.conf --no-drop-root --no-chroot --no-rlimits";
    avahi_ = Spawn({"unshare", "--net", "--mount", "sh", "-c", script}, dir_ + "/avahi.log");
    if (avahi_ < 0) return "cannot run unshare";
    bool up = testing::Eventually(
        [&] {
          std::ifstream log(dir_ + "/avahi.log");
          std::string text((std::istreambuf_iterator<char>(log)), {});
          if (waitpid(avahi_, nullptr, WNOHANG) == avahi_) {
            avahi_ = -1;  // exited (reaped): nothing to stop later
            return true;
          }
          return text.find("Server startup complete") != std::string::npos;
        },
        seconds(15));
    std::ifstream log(dir_ + "/avahi.log");
    std::string text((std::istreambuf_iterator<char>(log)), {});
    if (!up || text.find("Server startup complete") == std::string::npos) {
      return "avahi-daemon did not start in a private namespace (needs root for unshare): " +
             text.substr(0, 400);
    }
    return {};
  }

  void StopAvahi() { Reap(avahi_); }

  void Stop() {
    Reap(avahi_);
    Reap(dbus_);
    std::error_code ec;
    std::filesystem::remove(BusPath(), ec);
    if (!dir_.empty()) {
      if (::testing::Test::HasFailure()) {
        std::cerr << "dbus/avahi logs: " << dir_ << "\n";
      } else {
        std::filesystem::remove_all(dir_, ec);
      }
      dir_.clear();
    }
  }

 private:
  std::string dir_;
  pid_t dbus_ = -1;
  pid_t avahi_ = -1;
};

// `avahi-browse -rtp TYPE` until a resolved line contains every one of `want`, or 15 s.
std::string BrowseFor(const std::string& type, const std::vector<std::string>& want) {
  std::string out;
  testing::Eventually(
      [&] {
        out = Capture("timeout 5 avahi-browse -rtp " + type + " 2>&1");
        std::istringstream lines(out);
        for (std::string line; std::getline(lines, line);) {
          if (line.rfind("=;", 0) != 0) continue;
          bool all = true;
          for (const auto& w : want) all = all && line.find(w) != std::string::npos;
          if (all) return true;
        }
        return false;
      },
      seconds(15));
  return out;
}

Service MakeService(std::string name, std::string host, uint16_t port,
                    std::vector<std::string> aliases, std::string site = "") {
  Service s;
  s.name = std::move(name);
  s.host = std::move(host);
  s.port = port;
  s.aliases = std::move(aliases);
  s.site = std::move(site);
  return s;
}

class DnssdTest : public ::testing::Test {
 protected:
  void SetUp() override {
    for (const char* tool : {"/usr/bin/dbus-daemon", "/usr/sbin/avahi-daemon",
                             "/usr/bin/avahi-browse", "/usr/bin/unshare"}) {
      if (!Have(tool)) GTEST_SKIP() << tool << " absent (apt-get install avahi-daemon avahi-utils)";
    }
    if (auto why = avahi_.StartBus(); !why.empty()) GTEST_SKIP() << why;
  }

  // Skips the test when the private avahi-daemon cannot start; the caller returns when
  // IsSkipped() (GTEST_SKIP only leaves this function).
  void StartAvahi() {
    if (auto why = avahi_.StartAvahi(); !why.empty()) GTEST_SKIP() << why;
  }

  std::unique_ptr<Publisher> NewPublisher() {
    Publisher::Options o;
    o.retry = milliseconds(200);
    return Publisher::Create(
        loop_, [this](const Error& e) { warnings_.push_back(e.message()); }, o);
  }

  daemon::EventLoop loop_ = testing::NewLoop();
  PrivateAvahi avahi_;
  std::vector<std::string> warnings_;
};

TEST_F(DnssdTest, PublishesServiceWithSubtypesTxtAndAddress) {
  StartAvahi();
  if (IsSkipped()) return;
  auto pub = NewPublisher();
  Service s = MakeService("calc-lab", "10.1.2.3", 18812, {"CALCULATOR", "CALC"}, "lab");
  auto id = pub->Publish(s);
  ASSERT_TRUE(id) << id.error().ToString();
  ASSERT_TRUE(testing::RunLoopUntil(
      loop_, [&] { return !pub->established_name(*id).empty(); }, seconds(20)))
      << (warnings_.empty() ? "" : warnings_.front());
  EXPECT_EQ(pub->established_name(*id), s.name);

  auto out = BrowseFor("_rpyc._tcp", {"calc-lab", "10.1.2.3;18812"});
  EXPECT_NE(out.find("rpyc-10-1-2-3-18812.local;10.1.2.3;18812"), std::string::npos) << out;
  EXPECT_NE(out.find("\"aliases=CALCULATOR,CALC\""), std::string::npos) << out;
  EXPECT_NE(out.find("\"site=lab\""), std::string::npos) << out;
  // Browsing by alias finds it through its subtype.
  auto sub = BrowseFor("_calculator._sub._rpyc._tcp", {"calc-lab"});
  EXPECT_NE(sub.find("calc-lab"), std::string::npos) << sub;
  EXPECT_TRUE(warnings_.empty()) << warnings_.front();

  pub->Withdraw(*id);
  bool gone = testing::Eventually(
      [&] {
        event_base_loop(loop_.base(), EVLOOP_NONBLOCK);
        return Capture("timeout 5 avahi-browse -rtp _rpyc._tcp 2>&1").find("calc-lab") ==
               std::string::npos;
      },
      seconds(15));
  EXPECT_TRUE(gone) << "still browsable after Withdraw";
}

TEST_F(DnssdTest, NameCollisionRenames) {
  StartAvahi();
  if (IsSkipped()) return;
  auto pub = NewPublisher();
  // "A" cannot be a subtype: a warning, and the service is published without it.
  Service a = MakeService("same", "10.1.2.3", 1, {"A", "ALPHA"});
  Service b = a;
  b.port = 2;
  auto ia = pub->Publish(a);
  auto ib = pub->Publish(b);
  ASSERT_TRUE(ia && ib);
  ASSERT_TRUE(testing::RunLoopUntil(
      loop_,
      [&] { return !pub->established_name(*ia).empty() && !pub->established_name(*ib).empty(); },
      seconds(20)))
      << ::testing::PrintToString(warnings_);
  EXPECT_NE(pub->established_name(*ia), pub->established_name(*ib));
  // avahi-browse -p escapes ' ' and '#' in names.
  auto out = BrowseFor("_alpha._sub._rpyc._tcp", {"same\\032\\0352"});
  EXPECT_NE(out.find("same\\032\\0352;_rpyc._tcp"), std::string::npos) << out;
  auto text = ::testing::PrintToString(warnings_);
  EXPECT_NE(text.find("service name collision: same renamed to same #2"), std::string::npos)
      << text;
  EXPECT_NE(text.find("alias A of same cannot be a DNS-SD subtype"), std::string::npos) << text;
}

TEST_F(DnssdTest, StoppedAvahiWarnsOnceAndPublishesWhenItStarts) {
  auto pub = NewPublisher();  // the bus is up, avahi-daemon is not
  Service s = MakeService("late", "10.1.2.4", 7, {"LATE"});
  auto id = pub->Publish(s);
  ASSERT_TRUE(id);
  // The first warning may be late on a loaded machine; then retries add no second one.
  ASSERT_TRUE(testing::RunLoopUntil(
      loop_, [&] { return !warnings_.empty(); }, seconds(10)));
  testing::RunLoopUntil(
      loop_, [] { return false; }, milliseconds(500));
  ASSERT_EQ(warnings_.size(), 1u);
  // Either spelling: "not running" once the bus answers; "cannot reach ... retrying" when the
  // bus daemon, just started, was not yet answering (seen on a loaded machine).
  EXPECT_TRUE(
      warnings_[0].find("avahi-daemon is not running; services are published when it starts") !=
          std::string::npos ||
      warnings_[0].find("cannot reach avahi-daemon") != std::string::npos)
      << warnings_[0];
  EXPECT_FALSE(pub->connected());

  StartAvahi();
  if (IsSkipped()) return;
  ASSERT_TRUE(testing::RunLoopUntil(
      loop_, [&] { return !pub->established_name(*id).empty(); }, seconds(20)))
      << ::testing::PrintToString(warnings_);
  auto out = BrowseFor("_rpyc._tcp", {"late", "10.1.2.4;7"});
  EXPECT_NE(out.find("10.1.2.4;7"), std::string::npos) << out;

  // Stopped again: one more warning, no crash; and back when it returns.
  avahi_.StopAvahi();
  ASSERT_TRUE(testing::RunLoopUntil(
      loop_, [&] { return warnings_.size() >= 2; }, seconds(20)));
  EXPECT_EQ(warnings_.size(), 2u);
  EXPECT_FALSE(pub->connected());
}

TEST(DnssdNoBus, AbsentAvahiIsOneWarningAndNoCrash) {
  ASSERT_FALSE(std::filesystem::exists(BusPath()));  // no bus: no Avahi
  auto loop = testing::NewLoop();
  std::vector<std::string> warnings;
  Publisher::Options o;
  o.retry = milliseconds(50);
  auto pub = Publisher::Create(
      loop, [&](const Error& e) { warnings.push_back(e.message()); }, o);
  auto id = pub->Publish(MakeService("x", "", 1, {}));
  ASSERT_TRUE(id);
  ASSERT_TRUE(testing::RunLoopUntil(
      loop, [&] { return !warnings.empty(); }, seconds(10)));
  testing::RunLoopUntil(
      loop, [] { return false; }, milliseconds(400));  // several retries
  EXPECT_EQ(warnings.size(), 1u);
  ASSERT_FALSE(warnings.empty());
  EXPECT_NE(warnings[0].find("avahi"), std::string::npos) << warnings[0];
  EXPECT_FALSE(pub->connected());
  EXPECT_EQ(pub->established_name(*id), "");
  pub->Withdraw(*id);
}

TEST(Dnssd, NamesAndValidation) {
  EXPECT_EQ(AliasSubtype("CALCULATOR"), "_calculator._sub._rpyc._tcp");
  EXPECT_EQ(AliasSubtype(""), "");
  EXPECT_EQ(AliasSubtype(std::string(63, 'A')), "");
  EXPECT_EQ(AddressRecordName("10.0.0.5", 18812), "rpyc-10-0-0-5-18812.local");
  EXPECT_EQ(AddressRecordName("fd00::5", 1), "rpyc-fd00--5-1.local");
  BusPath();
  auto loop = testing::NewLoop();
  auto pub = Publisher::Create(loop, nullptr, {});
  Service s = MakeService("x", "not-an-address", 1, {});
  auto r = pub->Publish(s);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), Error::Code::kUsage);
  s.host.clear();
  s.port = 0;
  EXPECT_FALSE(pub->Publish(s));
}

}  // namespace
}  // namespace core::dnssd
