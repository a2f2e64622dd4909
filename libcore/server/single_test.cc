#include "libcore/server/single.h"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>

#include <event2/event.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "libcore/testing/eventually.h"
#include "libcore/testing/run_loop.h"
#include "libcore/testing/sockets.h"
#include "libcore/transport/socket_stream.h"

namespace core::server {
namespace {

using namespace std::chrono_literals;

using core::testing::Eventually;

using core::testing::MakeSocketPair;
using Pair = core::testing::SocketPair;

// Everything the client reads until end of stream (or 10 s of silence).
std::string ReadToEnd(int fd) {
  std::string out;
  for (;;) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 10'000) != 1) return out + "<timeout>";
    char buf[64];
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n <= 0) return out;
    out.append(buf, static_cast<size_t>(n));
  }
}

template <typename Pred>
bool Pump(daemon::EventLoop& loop, Pred pred) {
  return core::testing::RunLoopUntil(loop, pred);
}

// What the hooks saw.
struct Seen {
  std::atomic<int> served{0}, closed{0}, ended{0};
  std::mutex mu;
  std::string exception;  // guarded by mu
};

// Hooks over a socket: the connection answers "ok:<first byte>" and ends.
SingleConnection::Hooks Hooks(Seen& seen, std::shared_ptr<UniqueFd> fd) {
  SingleConnection::Hooks h;
  h.open = [fd]() -> std::unique_ptr<transport::Stream> {
    return std::make_unique<transport::SocketStream>(std::move(*fd), "test");
  };
  h.serve = [&seen](transport::Stream& s) {
    ++seen.served;
    char c = 0;
    auto n = s.Read({&c, 1});
    if (n && *n == 1) (void)s.WriteAll(std::string("ok:") + c);
  };
  h.on_exception = [&seen](const std::exception& e) {
    std::lock_guard<std::mutex> lock(seen.mu);
    seen.exception = e.what();
  };
  h.closed = [&seen] { ++seen.closed; };
  h.on_end = [&seen] { ++seen.ended; };
  return h;
}

TEST(SingleConnectionTest, ServesTheConnectionThenReportsItsEndOnTheLoop) {
  auto loop = core::testing::NewLoop();
  Seen seen;
  Pair p = MakeSocketPair();
  const int raw = p.server.get();
  SingleConnection one(loop, Hooks(seen, std::make_shared<UniqueFd>(std::move(p.server))), {});
  ASSERT_TRUE(one.Start(raw));
  ASSERT_EQ(::write(p.client.get(), "a", 1), 1);
  EXPECT_EQ(ReadToEnd(p.client.get()), "ok:a");
  EXPECT_TRUE(Pump(loop, [&] { return seen.ended.load() == 1; }));
  EXPECT_EQ(seen.served.load(), 1);
  EXPECT_EQ(seen.closed.load(), 1);
  EXPECT_TRUE(one.Wait(std::chrono::steady_clock::now()));
}

TEST(SingleConnectionTest, ShutdownEndsAWaitingConnectionWithoutOnEnd) {
  auto loop = core::testing::NewLoop();
  Seen seen;
  Pair p = MakeSocketPair();
  const int raw = p.server.get();
  SingleConnection one(loop, Hooks(seen, std::make_shared<UniqueFd>(std::move(p.server))), {});
  ASSERT_TRUE(one.Start(raw));
  EXPECT_TRUE(Eventually([&] { return seen.served.load() == 1; }));
  EXPECT_FALSE(one.Wait(std::chrono::steady_clock::now()));  // waits for the client
  one.Shutdown();
  EXPECT_TRUE(one.Wait(std::chrono::steady_clock::now() + 10s));
  EXPECT_EQ(seen.closed.load(), 1);
  EXPECT_EQ(ReadToEnd(p.client.get()), "");
  // The thread's report reaches the loop, which does not pass it on after Shutdown().
  for (int i = 0; i < 50; ++i) {
    event_base_loop(loop.base(), EVLOOP_ONCE | EVLOOP_NONBLOCK);
    std::this_thread::sleep_for(1ms);
  }
  EXPECT_EQ(seen.ended.load(), 0);
}

TEST(SingleConnectionTest, AFailedOpenStillClosesAndEnds) {
  auto loop = core::testing::NewLoop();
  Seen seen;
  auto hooks = Hooks(seen, std::make_shared<UniqueFd>());
  hooks.open = [] { return std::unique_ptr<transport::Stream>(); };
  SingleConnection one(loop, std::move(hooks), {});
  ASSERT_TRUE(one.Start(-1));
  EXPECT_TRUE(Pump(loop, [&] { return seen.ended.load() == 1; }));
  EXPECT_EQ(seen.served.load(), 0);
  EXPECT_EQ(seen.closed.load(), 1);
}

TEST(SingleConnectionTest, AnExceptionIsReportedAndTheConnectionEnds) {
  auto loop = core::testing::NewLoop();
  Seen seen;
  Pair p = MakeSocketPair();
  const int raw = p.server.get();
  auto hooks = Hooks(seen, std::make_shared<UniqueFd>(std::move(p.server)));
  hooks.serve = [](transport::Stream&) { throw std::runtime_error("boom"); };
  SingleConnection::Options options;
  std::atomic<bool> thread_started{false};
  options.on_thread_start = [&] { thread_started = true; };
  SingleConnection one(loop, std::move(hooks), std::move(options));
  ASSERT_TRUE(one.Start(raw));
  EXPECT_TRUE(Pump(loop, [&] { return seen.ended.load() == 1; }));
  EXPECT_TRUE(thread_started.load());
  EXPECT_EQ(seen.closed.load(), 1);
  {
    std::lock_guard<std::mutex> lock(seen.mu);
    EXPECT_EQ(seen.exception, "boom");
  }
  EXPECT_EQ(ReadToEnd(p.client.get()), "");  // the stream was closed in the unwinding
}

TEST(SingleConnectionTest, WaitReportsAConnectionThatDoesNotEnd) {
  auto loop = core::testing::NewLoop();
  Seen seen;
  std::mutex mu;
  std::condition_variable cv;
  bool release = false;
  auto hooks = Hooks(seen, std::make_shared<UniqueFd>());
  hooks.open = [] {
    Pair p = MakeSocketPair();
    return std::make_unique<transport::SocketStream>(std::move(p.server), "test");
  };
  hooks.serve = [&](transport::Stream&) {  // user code that ignores the shutdown
    std::unique_lock<std::mutex> lock(mu);
    cv.wait(lock, [&] { return release; });
  };
  SingleConnection one(loop, std::move(hooks), {});
  ASSERT_TRUE(one.Start(-1));
  one.Shutdown();
  EXPECT_FALSE(one.Wait(std::chrono::steady_clock::now() + 20ms));
  {
    std::lock_guard<std::mutex> lock(mu);
    release = true;
  }
  cv.notify_all();
  EXPECT_TRUE(one.Wait(std::chrono::steady_clock::now() + 10s));
}

TEST(SingleConnectionTest, ShutdownAfterTheEndLeavesAReusedDescriptorAlone) {
  auto loop = core::testing::NewLoop();
  Seen seen;
  Pair p = MakeSocketPair();
  const int raw = p.server.get();
  SingleConnection one(loop, Hooks(seen, std::make_shared<UniqueFd>(std::move(p.server))), {});
  ASSERT_TRUE(one.Start(raw));
  ASSERT_EQ(::write(p.client.get(), "b", 1), 1);
  EXPECT_EQ(ReadToEnd(p.client.get()), "ok:b");
  ASSERT_TRUE(one.Wait(std::chrono::steady_clock::now() + 10s));
  // The lowest free number comes back: most likely the connection's.
  Pair next = MakeSocketPair();
  one.Shutdown();
  ASSERT_EQ(::write(next.client.get(), "c", 1), 1);
  ASSERT_EQ(::write(next.server.get(), "d", 1), 1);
  char c = 0;
  EXPECT_EQ(::read(next.server.get(), &c, 1), 1);
  EXPECT_EQ(c, 'c');
  EXPECT_EQ(::read(next.client.get(), &c, 1), 1);
  EXPECT_EQ(c, 'd');
}

}  // namespace
}  // namespace core::server
