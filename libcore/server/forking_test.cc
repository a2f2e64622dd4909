#include "libcore/server/forking.h"

#include <chrono>
#include <cstring>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "libcore/transport/socket_stream.h"

namespace core::server {
namespace {

using std::chrono::milliseconds;
using std::chrono::steady_clock;

struct Pair {
  UniqueFd parent, child;
};

Pair MakePair() {
  int sv[2];
  EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  return {UniqueFd(sv[0]), UniqueFd(sv[1])};
}

// The connection a child serves: one end of a socket pair.
std::unique_ptr<transport::Stream> Conn(UniqueFd fd) {
  return std::make_unique<transport::SocketStream>(std::move(fd), "test");
}

std::string ReadAll(int fd) {
  std::string out;
  char buf[256];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n <= 0) return out;
    out.append(buf, static_cast<size_t>(n));
  }
}

// Reaps until `want` children were reported or 10 s passed.
std::map<uint64_t, ForkingServer::Ended> ReapUntil(ForkingServer& s, size_t want) {
  std::map<uint64_t, ForkingServer::Ended> ended;
  const auto deadline = steady_clock::now() + std::chrono::seconds(10);
  while (ended.size() < want && steady_clock::now() < deadline) {
    s.Reap([&](const ForkingServer::Ended& e) { ended[e.id] = e; });
    if (ended.size() < want) std::this_thread::sleep_for(milliseconds(5));
  }
  return ended;
}

// What the child does is chosen by its id: 1xx echo the id and exit 0, 2xx exit with 3,
// 3xx wait to be killed (ignoring SIGTERM when id is 301), 4xx throw.
ForkingServer::Hooks TestHooks() {
  ForkingServer::Hooks h;
  h.serve = [](std::unique_ptr<transport::Stream> stream, uint64_t id) {
    if (id / 100 == 1) {
      (void)stream->WriteAll("served " + std::to_string(id));
    } else if (id / 100 == 2) {
      ::_exit(3);
    } else if (id / 100 == 3) {
      if (id == 301) ::signal(SIGTERM, SIG_IGN);
      (void)stream->WriteAll("r");
      for (;;) ::pause();
    } else if (id / 100 == 4) {
      throw std::runtime_error("boom");
    }
  };
  return h;
}

ForkingServer::Options TestOptions() { return {{SIGTERM, SIGINT, SIGHUP, SIGCHLD}}; }

TEST(ForkingServerTest, ChildServesItsFdAndIsReapedWithItsId) {
  ForkingServer s(TestHooks(), TestOptions());
  std::vector<UniqueFd> ours;
  for (uint64_t id : {101, 102, 103}) {
    Pair p = MakePair();
    auto pid = s.Spawn(Conn(std::move(p.child)), id);
    ASSERT_TRUE(pid.has_value()) << pid.error().message();
    EXPECT_GT(*pid, 0);
    ours.push_back(std::move(p.parent));
  }
  EXPECT_EQ(s.size(), 3u);
  // The parent's copy of the child's end is closed: EOF comes when the child exits.
  EXPECT_EQ(ReadAll(ours[0].get()), "served 101");
  EXPECT_EQ(ReadAll(ours[1].get()), "served 102");
  EXPECT_EQ(ReadAll(ours[2].get()), "served 103");
  auto ended = ReapUntil(s, 3);
  ASSERT_EQ(ended.size(), 3u);
  for (uint64_t id : {101, 102, 103}) {
    ASSERT_TRUE(WIFEXITED(ended[id].status));
    EXPECT_EQ(WEXITSTATUS(ended[id].status), 0);
  }
  EXPECT_TRUE(s.empty());
  // No zombies left behind.
  errno = 0;
  EXPECT_EQ(::waitpid(-1, nullptr, WNOHANG), -1);
  EXPECT_EQ(errno, ECHILD);
}

TEST(ForkingServerTest, ExitStatusKillAndExceptionAreReported) {
  ForkingServer s(TestHooks(), TestOptions());
  Pair exits = MakePair();
  ASSERT_TRUE(s.Spawn(Conn(std::move(exits.child)), 201).has_value());
  Pair killed = MakePair();
  auto victim = s.Spawn(Conn(std::move(killed.child)), 300);
  ASSERT_TRUE(victim.has_value());
  Pair throws = MakePair();
  ASSERT_TRUE(s.Spawn(Conn(std::move(throws.child)), 401).has_value());
  char c = 0;
  ASSERT_EQ(::read(killed.parent.get(), &c, 1), 1);  // it serves
  ASSERT_EQ(::kill(*victim, SIGKILL), 0);
  auto ended = ReapUntil(s, 3);
  ASSERT_EQ(ended.size(), 3u);
  ASSERT_TRUE(WIFEXITED(ended[201].status));
  EXPECT_EQ(WEXITSTATUS(ended[201].status), 3);
  ASSERT_TRUE(WIFSIGNALED(ended[300].status));
  EXPECT_EQ(WTERMSIG(ended[300].status), SIGKILL);
  EXPECT_EQ(ended[300].pid, *victim);
  ASSERT_TRUE(WIFEXITED(ended[401].status));
  EXPECT_EQ(WEXITSTATUS(ended[401].status), 70);
  EXPECT_TRUE(s.empty());
}

TEST(ForkingServerTest, OtherChildrenOfTheProcessAreLeftAlone) {
  ForkingServer s(TestHooks(), TestOptions());
  const pid_t stranger = ::fork();
  ASSERT_GE(stranger, 0);
  if (stranger == 0) ::_exit(9);
  // Let the stranger end first, so the next ended child the kernel names is not ours.
  siginfo_t info{};
  ASSERT_EQ(::waitid(P_PID, static_cast<id_t>(stranger), &info, WEXITED | WNOWAIT), 0);
  Pair p = MakePair();
  ASSERT_TRUE(s.Spawn(Conn(std::move(p.child)), 104).has_value());
  EXPECT_EQ(ReadAll(p.parent.get()), "served 104");
  auto ended = ReapUntil(s, 1);
  ASSERT_EQ(ended.size(), 1u);
  EXPECT_TRUE(WIFEXITED(ended[104].status));
  // The stranger is still there for its owner to collect.
  int status = 0;
  ASSERT_EQ(::waitpid(stranger, &status, WNOHANG), stranger);
  EXPECT_EQ(WEXITSTATUS(status), 9);
}

TEST(ForkingServerTest, WaitAllStopsChildrenAndKillsStubbornOnes) {
  ForkingServer s(TestHooks(), TestOptions());
  // The child's signals are reset: a SIGTERM the test process ignores still ends child 300.
  auto* old = ::signal(SIGTERM, SIG_IGN);
  Pair a = MakePair(), b = MakePair();
  ASSERT_TRUE(s.Spawn(Conn(std::move(a.child)), 300).has_value());
  ASSERT_TRUE(s.Spawn(Conn(std::move(b.child)), 301).has_value());  // ignores SIGTERM itself
  ::signal(SIGTERM, old);
  char c = 0;
  ASSERT_EQ(::read(a.parent.get(), &c, 1), 1);
  ASSERT_EQ(::read(b.parent.get(), &c, 1), 1);
  s.SignalAll(SIGTERM);
  std::map<uint64_t, int> signals;
  const auto start = steady_clock::now();
  s.WaitAll(start + milliseconds(300), [&](const ForkingServer::Ended& e) {
    signals[e.id] = WIFSIGNALED(e.status) ? WTERMSIG(e.status) : 0;
  });
  EXPECT_TRUE(s.empty());
  EXPECT_EQ(signals[300], SIGTERM);
  EXPECT_EQ(signals[301], SIGKILL);
  EXPECT_GE(steady_clock::now() - start, milliseconds(300));
  EXPECT_LT(steady_clock::now() - start, std::chrono::seconds(5));
}

TEST(ForkingServerTest, FailedForkClosesTheFdAndCountsNothing) {
  ForkingServer::Hooks h = TestHooks();
  h.fork = []() -> Result<pid_t> { return Fail(Error::Io("fork: no")); };
  ForkingServer s(std::move(h), TestOptions());
  Pair p = MakePair();
  auto pid = s.Spawn(Conn(std::move(p.child)), 105);
  ASSERT_FALSE(pid.has_value());
  EXPECT_EQ(pid.error().message(), "fork: no");
  EXPECT_TRUE(s.empty());
  EXPECT_EQ(ReadAll(p.parent.get()), "");  // EOF: the child's end was closed
}

TEST(ForkingServerTest, HooksRunInTheChildInOrder) {
  Pair log = MakePair();
  const int log_fd = log.child.get();
  ForkingServer::Hooks h;
  h.in_child = [log_fd] { (void)!::write(log_fd, "in_child,", 9); };
  h.serve = [log_fd](std::unique_ptr<transport::Stream>, uint64_t) {
    (void)!::write(log_fd, "serve,", 6);
  };
  h.exit_child = [log_fd](int status) {
    (void)!::write(log_fd, "exit", 4);
    ::_exit(status + 5);
  };
  ForkingServer s(std::move(h), TestOptions());
  Pair p = MakePair();
  ASSERT_TRUE(s.Spawn(Conn(std::move(p.child)), 7).has_value());
  auto ended = ReapUntil(s, 1);
  ASSERT_EQ(ended.size(), 1u);
  EXPECT_EQ(WEXITSTATUS(ended[7].status), 5);
  log.child.Reset();
  EXPECT_EQ(ReadAll(log.parent.get()), "in_child,serve,exit");
}

}  // namespace
}  // namespace core::server
