#include "libcore/server/pooled.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include "libcore/testing/eventually.h"
#include "libcore/testing/run_loop.h"
#include "libcore/testing/sockets.h"

namespace core::server {
namespace {

using namespace std::chrono_literals;

using core::testing::Eventually;

using core::testing::MakeSocketPair;
using core::testing::ReadSome;
using core::testing::RunLoopUntil;
using Pair = core::testing::SocketPair;

Pair MakePair() { return MakeSocketPair(); }

void Write(int fd, const std::string& s) {
  ASSERT_EQ(::write(fd, s.data(), s.size()), static_cast<ssize_t>(s.size()));
}

// What the sessions and hooks saw, from any thread.
struct Record {
  std::mutex mu;
  std::vector<uint64_t> opened, finished, closed, idle;
  std::atomic<int> steps{0};
  bool Has(const std::vector<uint64_t>& v, uint64_t id) {
    std::lock_guard<std::mutex> lock(mu);
    return std::find(v.begin(), v.end(), id) != v.end();
  }
  size_t Count(const std::vector<uint64_t>& v) {
    std::lock_guard<std::mutex> lock(mu);
    return v.size();
  }
};

// Echoes what has arrived; ends at end of stream.
class EchoSession final : public PooledServer::Session {
 public:
  EchoSession(UniqueFd fd, uint64_t id, Record& r) : fd_(std::move(fd)), id_(id), r_(r) {}

  bool ServeAvailable() override {
    ++r_.steps;
    char buf[256];
    for (;;) {
      const ssize_t n = ::recv(fd_.get(), buf, sizeof buf, MSG_DONTWAIT);
      if (n > 0) {
        (void)!::send(fd_.get(), buf, static_cast<size_t>(n), MSG_NOSIGNAL);
        continue;
      }
      return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
    }
  }
  void Finish() override {
    std::lock_guard<std::mutex> lock(r_.mu);
    r_.finished.push_back(id_);
  }
  void Shutdown() override { (void)::shutdown(fd_.get(), SHUT_RDWR); }
  std::optional<std::chrono::milliseconds> FrameTimeLeft() const override { return frame_left; }

  std::optional<std::chrono::milliseconds> frame_left;

 private:
  UniqueFd fd_;
  const uint64_t id_;
  Record& r_;
};

PooledServer::Hooks EchoHooks(Record& r) {
  PooledServer::Hooks h;
  h.open = [&r](UniqueFd fd, uint64_t id) -> std::unique_ptr<PooledServer::Session> {
    {
      std::lock_guard<std::mutex> lock(r.mu);
      r.opened.push_back(id);
    }
    return std::make_unique<EchoSession>(std::move(fd), id, r);
  };
  h.closed = [&r](uint64_t id) {
    std::lock_guard<std::mutex> lock(r.mu);
    r.closed.push_back(id);
  };
  h.on_idle_timeout = [&r](uint64_t id) {
    std::lock_guard<std::mutex> lock(r.mu);
    r.idle.push_back(id);
  };
  return h;
}

template <typename Pred>
bool Pump(daemon::EventLoop& loop, Pred pred) {
  return RunLoopUntil(loop, pred);
}

// Pumps the loop until `fd` has something to read, and returns it.
std::string PumpRead(daemon::EventLoop& loop, int fd) {
  std::string got;
  Pump(loop, [&] {
    got = ReadSome(fd, 0);
    return !got.empty();
  });
  return got;
}

TEST(PooledServerTest, IdleConnectionsHoldNoWorker) {
  auto loop = core::testing::NewLoop();
  Record r;
  PooledServer::Options o;
  o.threads = 1;
  PooledServer server(loop, EchoHooks(r), o);
  ASSERT_TRUE(server.Start());
  // Three open connections on one worker: each is served while the others stay open and idle.
  std::vector<Pair> pairs;
  for (uint64_t id = 1; id <= 3; ++id) {
    pairs.push_back(MakePair());
    server.Add(std::move(pairs.back().server), id);
  }
  EXPECT_EQ(server.size(), 3U);
  for (int round = 0; round < 2; ++round) {
    for (size_t i = 0; i < pairs.size(); ++i) {
      const std::string msg = "m" + std::to_string(round) + std::to_string(i);
      Write(pairs[i].client.get(), msg);
      EXPECT_EQ(PumpRead(loop, pairs[i].client.get()), msg);
    }
  }
  EXPECT_EQ(r.Count(r.finished), 0U);
  EXPECT_EQ(server.size(), 3U);
  server.Shutdown();
  EXPECT_TRUE(Pump(loop, [&] { return server.size() == 0; }));
  EXPECT_EQ(server.Stop(std::chrono::steady_clock::now() + 5s), 0U);
}

TEST(PooledServerTest, AnEndedConnectionIsFinishedClosedAndDropped) {
  auto loop = core::testing::NewLoop();
  Record r;
  PooledServer::Options o;
  o.threads = 2;
  PooledServer server(loop, EchoHooks(r), o);
  ASSERT_TRUE(server.Start());
  Pair a = MakePair();
  Pair b = MakePair();
  server.Add(std::move(a.server), 7);
  server.Add(std::move(b.server), 8);
  Write(a.client.get(), "x");
  EXPECT_EQ(PumpRead(loop, a.client.get()), "x");
  a.client.Reset();
  EXPECT_TRUE(Pump(loop, [&] { return server.size() == 1; }));
  EXPECT_TRUE(r.Has(r.finished, 7));
  EXPECT_TRUE(r.Has(r.closed, 7));
  EXPECT_FALSE(r.Has(r.closed, 8));
  // The other connection is unaffected.
  Write(b.client.get(), "y");
  EXPECT_EQ(PumpRead(loop, b.client.get()), "y");
  server.Shutdown();
  EXPECT_TRUE(Pump(loop, [&] { return server.size() == 0; }));
  EXPECT_EQ(ReadSome(b.client.get(), 5000), "EOF");
  EXPECT_TRUE(r.Has(r.closed, 8));
  EXPECT_EQ(server.Stop(std::chrono::steady_clock::now() + 5s), 0U);
}

TEST(PooledServerTest, AFailedSetupEndsTheConnectionWithoutClosed) {
  auto loop = core::testing::NewLoop();
  Record r;
  auto hooks = EchoHooks(r);
  hooks.open = [&r](UniqueFd, uint64_t id) -> std::unique_ptr<PooledServer::Session> {
    std::lock_guard<std::mutex> lock(r.mu);
    r.opened.push_back(id);
    return nullptr;  // closes the socket
  };
  PooledServer server(loop, std::move(hooks), PooledServer::Options{});
  ASSERT_TRUE(server.Start());
  Pair p = MakePair();
  server.Add(std::move(p.server), 3);
  EXPECT_TRUE(Pump(loop, [&] { return server.size() == 0; }));
  EXPECT_TRUE(r.Has(r.opened, 3));
  EXPECT_EQ(ReadSome(p.client.get(), 5000), "EOF");
  EXPECT_EQ(r.Count(r.closed), 0U);
  EXPECT_EQ(server.Stop(std::chrono::steady_clock::now() + 5s), 0U);
}

TEST(PooledServerTest, AnIdleConnectionIsShutDownAfterTheIdleTimeout) {
  auto loop = core::testing::NewLoop();
  Record r;
  auto hooks = EchoHooks(r);
  hooks.idle_timeout = [] { return 50ms; };
  PooledServer server(loop, std::move(hooks), PooledServer::Options{});
  ASSERT_TRUE(server.Start());
  Pair p = MakePair();
  server.Add(std::move(p.server), 5);
  EXPECT_TRUE(Pump(loop, [&] { return server.size() == 0; }));
  EXPECT_TRUE(r.Has(r.idle, 5));
  EXPECT_TRUE(r.Has(r.closed, 5));
  EXPECT_EQ(ReadSome(p.client.get(), 5000), "EOF");
  EXPECT_EQ(server.Stop(std::chrono::steady_clock::now() + 5s), 0U);
}

TEST(PooledServerTest, AFrameDeadlineWakesAWorkerWithoutAnIdleTimeout) {
  auto loop = core::testing::NewLoop();
  Record r;
  auto hooks = EchoHooks(r);
  hooks.idle_timeout = [] { return 3600s; };
  hooks.open = [&r](UniqueFd fd, uint64_t id) -> std::unique_ptr<PooledServer::Session> {
    auto s = std::make_unique<EchoSession>(std::move(fd), id, r);
    s->frame_left = 20ms;  // the session is mid-frame: the loop must step it when it runs out
    return s;
  };
  PooledServer server(loop, std::move(hooks), PooledServer::Options{});
  ASSERT_TRUE(server.Start());
  Pair p = MakePair();
  server.Add(std::move(p.server), 9);
  // Nothing arrives, yet the worker is woken again and again at the frame deadline.
  EXPECT_TRUE(Pump(loop, [&] { return r.steps.load() >= 3; }));
  EXPECT_EQ(r.Count(r.idle), 0U);
  EXPECT_EQ(server.size(), 1U);
  server.Shutdown();
  EXPECT_TRUE(Pump(loop, [&] { return server.size() == 0; }));
  EXPECT_EQ(server.Stop(std::chrono::steady_clock::now() + 5s), 0U);
}

TEST(PooledServerTest, ShutdownInterruptsASetupThreadWaitingOnThePeer) {
  auto loop = core::testing::NewLoop();
  Record r;
  auto hooks = EchoHooks(r);
  std::atomic<int> waiting{0};
  // A handshake that waits for a byte the peer never sends.
  hooks.open = [&](UniqueFd fd, uint64_t id) -> std::unique_ptr<PooledServer::Session> {
    ++waiting;
    char c = 0;
    if (::read(fd.get(), &c, 1) != 1) return nullptr;
    return std::make_unique<EchoSession>(std::move(fd), id, r);
  };
  PooledServer::Options o;
  o.threads = 1;
  o.setup_thread = true;
  PooledServer server(loop, std::move(hooks), o);
  ASSERT_TRUE(server.Start());
  // Two silent peers in setup do not stall the single worker: a third peer is served.
  Pair silent1 = MakePair();
  Pair silent2 = MakePair();
  Pair talker = MakePair();
  server.Add(std::move(silent1.server), 1);
  server.Add(std::move(silent2.server), 2);
  server.Add(std::move(talker.server), 3);
  Write(talker.client.get(), "h");  // completes its handshake
  EXPECT_TRUE(Eventually([&] { return waiting.load() == 3; }));
  Write(talker.client.get(), "z");
  EXPECT_EQ(PumpRead(loop, talker.client.get()), "z");
  server.Shutdown();
  EXPECT_TRUE(Pump(loop, [&] { return server.size() == 0; }));
  EXPECT_EQ(server.Stop(std::chrono::steady_clock::now() + 5s), 0U);
}

TEST(PooledServerTest, StopCountsAWorkerThatDoesNotReturn) {
  auto loop = core::testing::NewLoop();
  Record r;
  std::mutex mu;
  std::condition_variable cv;
  bool release = false;
  bool entered = false;
  class Stuck final : public PooledServer::Session {
   public:
    Stuck(UniqueFd fd, std::function<void()> wait) : fd_(std::move(fd)), wait_(std::move(wait)) {}
    bool ServeAvailable() override {
      wait_();
      return false;
    }
    void Finish() override {}
    void Shutdown() override {}

   private:
    UniqueFd fd_;
    std::function<void()> wait_;
  };
  auto hooks = EchoHooks(r);
  hooks.open = [&](UniqueFd fd, uint64_t) -> std::unique_ptr<PooledServer::Session> {
    return std::make_unique<Stuck>(std::move(fd), [&] {
      std::unique_lock<std::mutex> lock(mu);
      entered = true;
      cv.notify_all();
      cv.wait(lock, [&] { return release; });
    });
  };
  PooledServer server(loop, std::move(hooks), PooledServer::Options{});
  ASSERT_TRUE(server.Start());
  Pair p = MakePair();
  server.Add(std::move(p.server), 1);
  Write(p.client.get(), "q");
  EXPECT_TRUE(Pump(loop, [&] {
    std::lock_guard<std::mutex> lock(mu);
    return entered;
  }));
  server.Shutdown();
  EXPECT_EQ(server.Stop(std::chrono::steady_clock::now() + 20ms), 1U);
  {
    std::lock_guard<std::mutex> lock(mu);
    release = true;
  }
  cv.notify_all();
  EXPECT_EQ(server.Stop(std::chrono::steady_clock::now() + 10s), 0U);
  EXPECT_TRUE(r.Has(r.closed, 1));
}

}  // namespace
}  // namespace core::server
