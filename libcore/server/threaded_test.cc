#include "libcore/server/threaded.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "libcore/testing/eventually.h"

namespace core::server {
namespace {

using namespace std::chrono_literals;

using core::testing::Eventually;

// A non-blocking listening socket on 127.0.0.1, any port.
struct TestListener {
  UniqueFd fd;
  uint16_t port = 0;
};

TestListener Listen() {
  TestListener l;
  l.fd = UniqueFd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_EQ(::bind(l.fd.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa), 0);
  EXPECT_EQ(::listen(l.fd.get(), 64), 0);
  socklen_t len = sizeof sa;
  EXPECT_EQ(::getsockname(l.fd.get(), reinterpret_cast<sockaddr*>(&sa), &len), 0);
  l.port = ntohs(sa.sin_port);
  return l;
}

UniqueFd Connect(uint16_t port) {
  UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  sa.sin_port = htons(port);
  EXPECT_EQ(::connect(fd.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa), 0);
  return fd;
}

// Reads one byte from `fd` within `ms`; -1 on timeout, 0 at end of stream.
int ReadByte(int fd, int ms) {
  pollfd p{fd, POLLIN, 0};
  if (::poll(&p, 1, ms) != 1) return -1;
  char c = 0;
  const ssize_t n = ::read(fd, &c, 1);
  return n == 1 ? static_cast<unsigned char>(c) : 0;
}

size_t FdCount() {
  size_t n = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator("/proc/self/fd")) ++n;
  return n;
}

// A handler that writes the listener's index and returns (closing the connection).
void Greet(UniqueFd fd, const sockaddr_storage& peer, socklen_t len, size_t listener) {
  EXPECT_EQ(peer.ss_family, AF_INET);
  EXPECT_GT(len, 0U);
  const char c = static_cast<char>('0' + listener);
  EXPECT_EQ(::write(fd.get(), &c, 1), 1);
}

// Handlers that count themselves in and wait until the gate opens (or 5 s pass), then greet.
class Gate {
 public:
  // The gate opens by itself once `open_at` handlers wait (never when 0).
  explicit Gate(int open_at = 0) : open_at_(open_at) {}
  ThreadedAcceptor::Handler handler() {
    return [this](UniqueFd fd, const sockaddr_storage& peer, socklen_t len, size_t listener) {
      std::unique_lock<std::mutex> lock(mu_);
      ++running_;
      if (running_ == open_at_) open_ = true;
      cv_.notify_all();
      const bool opened = cv_.wait_for(lock, 5s, [this] { return open_; });
      lock.unlock();
      if (opened) Greet(std::move(fd), peer, len, listener);
    };
  }
  bool WaitRunning(int n) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, 5s, [&] { return running_ >= n; });
  }
  void Open() {
    std::lock_guard<std::mutex> lock(mu_);
    open_ = true;
    cv_.notify_all();
  }

 private:
  const int open_at_;
  std::mutex mu_;
  std::condition_variable cv_;
  int running_ = 0;
  bool open_ = false;
};

TEST(ThreadedAcceptorTest, SequentialConnectionsAreServedByAtMostTwoThreads) {
  TestListener l = Listen();
  std::set<std::thread::id> ids;
  std::mutex mu;
  std::atomic<int> starts{0};
  ThreadedAcceptor::Options o;
  o.on_thread_start = [&starts] { ++starts; };
  ThreadedAcceptor acceptor(
      {l.fd.get()},
      [&](UniqueFd fd, const sockaddr_storage& peer, socklen_t len, size_t listener) {
        {
          std::lock_guard<std::mutex> lock(mu);
          ids.insert(std::this_thread::get_id());
        }
        Greet(std::move(fd), peer, len, listener);
      },
      o);
  ASSERT_TRUE(acceptor.Start());
  for (int i = 0; i < 30; ++i) {
    UniqueFd c = Connect(l.port);
    EXPECT_EQ(ReadByte(c.get(), 5000), '0');
    EXPECT_EQ(ReadByte(c.get(), 5000), 0);  // the handler returned: closed
    // The peer sees the close just before the serving thread counts itself idle again; a
    // connection made in that gap rightly starts a third thread. Wait for the count.
    EXPECT_TRUE(Eventually([&] { return acceptor.idle() == acceptor.threads_created(); }));
  }
  // The accepting thread starts one more to wait while it serves; then the two take turns.
  EXPECT_LE(acceptor.threads_created(), 2U);
  EXPECT_TRUE(
      Eventually([&] { return starts.load() == static_cast<int>(acceptor.threads_created()); }));
  std::lock_guard<std::mutex> lock(mu);
  EXPECT_LE(ids.size(), 2U);
}

TEST(ThreadedAcceptorTest, ConcurrentConnectionsAreServedAtOnce) {
  // Every handler waits until all of them run: a connection left in the backlog while others
  // are served (a waiting thread not woken) fails this.
  constexpr int kClients = 8;
  TestListener l = Listen();
  const size_t fds_before = FdCount();
  Gate gate(kClients);
  ThreadedAcceptor acceptor({l.fd.get()}, gate.handler(), {});
  ASSERT_TRUE(acceptor.Start());
  std::vector<UniqueFd> clients;
  for (int i = 0; i < kClients; ++i) {
    clients.push_back(Connect(l.port));
    std::this_thread::sleep_for(1ms);
  }
  for (auto& c : clients) EXPECT_EQ(ReadByte(c.get(), 8000), '0');
  EXPECT_GE(acceptor.threads_created(), static_cast<size_t>(kClients));
  // All back to waiting (at most max_idle).
  EXPECT_TRUE(Eventually([&] { return acceptor.idle() == kClients + 1U; }));
  // Nine waiting threads, and two descriptors in all (the epoll set and the stop event).
  clients.clear();
  EXPECT_TRUE(Eventually([&] { return FdCount() == fds_before + 2; })) << FdCount();
}

TEST(ThreadedAcceptorTest, TwoListenersEachServedWithTheirIndex) {
  TestListener a = Listen();
  TestListener b = Listen();
  ThreadedAcceptor acceptor({a.fd.get(), b.fd.get()}, Greet, {});
  ASSERT_TRUE(acceptor.Start());
  for (int i = 0; i < 5; ++i) {
    UniqueFd ca = Connect(a.port);
    UniqueFd cb = Connect(b.port);
    EXPECT_EQ(ReadByte(cb.get(), 5000), '1');
    EXPECT_EQ(ReadByte(ca.get(), 5000), '0');
  }
}

TEST(ThreadedAcceptorTest, IdleThreadsBeyondMaxIdleExitAndTheRestAfterTheTimeoutButOne) {
  constexpr int kClients = 6;
  TestListener l = Listen();
  Gate gate;
  ThreadedAcceptor::Options o;
  o.max_idle = 3;
  o.idle_timeout = 200ms;
  ThreadedAcceptor acceptor({l.fd.get()}, gate.handler(), o);
  ASSERT_TRUE(acceptor.Start());
  std::vector<UniqueFd> clients;
  for (int i = 0; i < kClients; ++i) clients.push_back(Connect(l.port));
  ASSERT_TRUE(gate.WaitRunning(kClients));
  EXPECT_EQ(acceptor.idle(), 1U);  // one waits while six serve
  gate.Open();
  for (auto& c : clients) EXPECT_EQ(ReadByte(c.get(), 5000), '0');
  // No more than max_idle wait afterwards; after the idle timeout, one.
  EXPECT_TRUE(Eventually([&] { return acceptor.idle() <= 3U; }));
  EXPECT_TRUE(Eventually([&] { return acceptor.idle() == 1U; }));
  std::this_thread::sleep_for(400ms);
  EXPECT_EQ(acceptor.idle(), 1U);  // the last one stays
  UniqueFd c = Connect(l.port);
  EXPECT_EQ(ReadByte(c.get(), 5000), '0');
}

TEST(ThreadedAcceptorTest, StopEndsWaitingAndLetsServedConnectionsFinish) {
  TestListener l = Listen();
  Gate gate;
  ThreadedAcceptor acceptor({l.fd.get()}, gate.handler(), {});
  ASSERT_TRUE(acceptor.Start());
  UniqueFd busy = Connect(l.port);
  ASSERT_TRUE(gate.WaitRunning(1));
  const auto t0 = std::chrono::steady_clock::now();
  acceptor.Stop();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 2s);
  EXPECT_EQ(acceptor.idle(), 0U);
  // Nobody accepts now: a new client stays in the backlog, unanswered.
  UniqueFd late = Connect(l.port);
  EXPECT_EQ(ReadByte(late.get(), 200), -1);
  gate.Open();
  EXPECT_EQ(ReadByte(busy.get(), 5000), '0');  // the served connection finished normally
  EXPECT_TRUE(Eventually([&] { return acceptor.idle() == 0U; }));
  acceptor.Stop();  // idempotent
}

TEST(ThreadedAcceptorTest, AcceptErrorsAreReportedAndRetried) {
  TestListener l = Listen();
  std::atomic<int> errors{0};
  ThreadedAcceptor::Options o;
  o.error_backoff = 20ms;
  o.on_accept_error = [&errors](size_t listener, const Error& e) {
    EXPECT_EQ(listener, 0U);
    EXPECT_NE(e.message().find("accept"), std::string::npos) << e.message();
    ++errors;
  };
  ThreadedAcceptor acceptor({l.fd.get()}, Greet, o);
  ASSERT_TRUE(acceptor.Start());
  // No descriptor left for accept() (EMFILE): the limit at the highest open one, the holes below
  // it filled. The client's socket is made before.
  UniqueFd client(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  int highest = 0;
  for (const auto& e : std::filesystem::directory_iterator("/proc/self/fd")) {
    highest = std::max(highest, std::stoi(e.path().filename().string()));
  }
  rlimit old{};
  ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &old), 0);
  rlimit low = old;
  low.rlim_cur = static_cast<rlim_t>(highest) + 1;
  ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &low), 0);
  std::vector<UniqueFd> fillers;
  for (int fd = ::dup(0); fd >= 0; fd = ::dup(0)) fillers.emplace_back(fd);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  sa.sin_port = htons(l.port);
  ASSERT_EQ(::connect(client.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa), 0);
  EXPECT_TRUE(Eventually([&] { return errors.load() >= 2; }));  // reported, and tried again
  fillers.clear();
  ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &old), 0);
  EXPECT_EQ(ReadByte(client.get(), 5000), '0');  // served once a descriptor is free
}

TEST(ThreadedAcceptorTest, DestructorWithoutStartIsFine) {
  TestListener l = Listen();
  ThreadedAcceptor acceptor({l.fd.get()}, Greet, {});
  EXPECT_EQ(acceptor.threads_created(), 0U);
}

}  // namespace
}  // namespace core::server
