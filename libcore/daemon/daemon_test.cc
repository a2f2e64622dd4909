#include <cstdlib>
#include <cstring>
#include <memory>
#include <vector>

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>

#include "libcore/daemon/loop.h"
#include "libcore/daemon/memory.h"
#include "libcore/daemon/sockets.h"

namespace core::daemon {
namespace {

TEST(Loop, TimerFiresAndRepeats) {
  auto loop = EventLoop::Create();
  ASSERT_TRUE(loop);
  int fired = 0;
  Timer t(*loop, [&] {
    if (++fired == 3) loop->Break();
  });
  t.Start(std::chrono::milliseconds(1), true);
  ASSERT_TRUE(loop->Run());
  EXPECT_EQ(fired, 3);
}

TEST(Loop, IoWatchSeesDatagramAndTimeout) {
  auto loop = EventLoop::Create();
  ASSERT_TRUE(loop);
  auto server = BindUdp("127.0.0.1", 0);
  ASSERT_TRUE(server) << server.error().message();
  const uint16_t port = LocalPort(server->get());
  ASSERT_NE(port, 0);
  short seen = 0;
  IoWatch w(*loop, server->get(), EV_READ, false, [&](short what) {
    seen = what;
    loop->Break();
  });
  w.Start(std::chrono::milliseconds(5));
  ASSERT_TRUE(loop->Run());
  EXPECT_TRUE(seen & EV_TIMEOUT);

  UniqueFd client(socket(AF_INET, SOCK_DGRAM, 0));
  sockaddr_in to{};
  to.sin_family = AF_INET;
  to.sin_port = htons(port);
  to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(sendto(client.get(), "x", 1, 0, reinterpret_cast<sockaddr*>(&to), sizeof to), 1);
  w.Start(std::chrono::milliseconds(2000));
  ASSERT_TRUE(loop->Run());
  EXPECT_TRUE(seen & EV_READ);
}

TEST(Loop, SignalIsALoopEvent) {
  auto loop = EventLoop::Create();
  ASSERT_TRUE(loop);
  bool got = false;
  SignalWatch s(*loop, SIGUSR1, [&] {
    got = true;
    loop->Break();
  });
  Timer t(*loop, [] { raise(SIGUSR1); });
  t.Start(std::chrono::milliseconds(1));
  ASSERT_TRUE(loop->Run());
  EXPECT_TRUE(got);
}

TEST(Sockets, BadHostIsAConfigError) {
  auto fd = BindUdp("not-an-address", 0);
  ASSERT_FALSE(fd);
  EXPECT_EQ(fd.error().code(), Error::Code::kConfig);
}

TEST(Sockets, Ipv6SocketAndNoInheritedFds) {
  auto fd = BindUdp("::1", 0);
  ASSERT_TRUE(fd) << fd.error().message();
  EXPECT_NE(LocalPort(fd->get()), 0);
  unsetenv("LISTEN_FDS");
  auto inherited = TakeInheritedSockets();
  ASSERT_TRUE(inherited);
  EXPECT_TRUE(inherited->empty());
}

TEST(Memory, ResidentSizeAndReleaseOfFreedHeap) {
  const size_t start = ResidentKib();
  EXPECT_GT(start, 0u);
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  GTEST_SKIP() << "the sanitizer's allocator replaces glibc's heap, which malloc_trim releases";
#endif
  {
    // 64 MiB in 64 KiB blocks (below the mmap threshold: they stay in the heap when freed).
    std::vector<std::unique_ptr<char[]>> blocks;
    for (int i = 0; i < 1024; ++i) {
      blocks.emplace_back(new char[64 << 10]);
      std::memset(blocks.back().get(), 1, 64 << 10);
    }
    EXPECT_GT(ResidentKib(), start + (48 << 10));
    // Freed in reverse, except the last one allocated: it pins the top of the heap, so only
    // a release of free pages inside the heap (not a trim of its top) gives the rest back.
    for (int i = 0; i < 1023; ++i) blocks[static_cast<size_t>(i)].reset();
    ReleaseFreeMemory();
    EXPECT_LT(ResidentKib(), start + (16 << 10));
  }
}

TEST(Memory, IdleTrimReleasesOnceLoadHasDropped) {
  EXPECT_TRUE(IdleTrim::Low(0, 0));
  EXPECT_FALSE(IdleTrim::Low(1, 8));    // a small peak: only an empty daemon counts
  EXPECT_TRUE(IdleTrim::Low(50, 200));  // a quarter of a spike left
  EXPECT_FALSE(IdleTrim::Low(51, 200));

  auto loop = EventLoop::Create();
  ASSERT_TRUE(loop);
  int64_t open = 0;
  int wakes = 0;
  int releases = 0;
  IdleTrim trim(
      *loop, std::chrono::milliseconds(20), [&] { return open; }, [&] { ++wakes; },
      [&](size_t before, size_t after) {
        EXPECT_GT(before, 0u);
        EXPECT_GT(after, 0u);
        ++releases;
      });
  // A spike to 200, then connections ending: one wake when a quarter is left, none after it
  // while the release is pending.
  for (open = 1; open <= 200; ++open) trim.Opened(open);
  for (open = 199; open >= 40; --open) trim.Closed(open);
  EXPECT_EQ(wakes, 1);
  trim.OnWake();
  // Load is back before the delay ends: no release, and the next drop may ask again.
  open = 150;
  Timer stop(*loop, [&] { loop->Break(); });
  stop.Start(std::chrono::milliseconds(100));
  ASSERT_TRUE(loop->Run());
  EXPECT_EQ(releases, 0);
  for (open = 149; open >= 0; --open) trim.Closed(open);
  EXPECT_EQ(wakes, 2);
  trim.OnWake();
  open = 0;
  stop.Start(std::chrono::milliseconds(100));
  ASSERT_TRUE(loop->Run());
  EXPECT_EQ(releases, 1);
  // Steady load at a low level never asks again until a close leaves it low.
  trim.Opened(1);
  trim.Opened(2);
  EXPECT_EQ(wakes, 2);
  trim.Closed(1);  // peak 2 since the release: not low yet
  EXPECT_EQ(wakes, 2);
  trim.Closed(0);
  EXPECT_EQ(wakes, 3);
}

}  // namespace
}  // namespace core::daemon
