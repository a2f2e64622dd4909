#include "daemons/classicd/live_connections.h"

#include <array>
#include <chrono>
#include <thread>

#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "libcore/transport/memory_stream.h"

namespace classicd {
namespace {

using core::transport::MemoryStream;
using std::chrono::milliseconds;
using std::chrono::steady_clock;

// The other end of `stream` reads end of stream (within a few seconds: a failure does not hang).
bool PeerSeesEnd(MemoryStream& peer) {
  auto ready = peer.WaitReadable(5000);
  if (!ready || !*ready) return false;
  char c = 0;
  auto n = peer.Read({&c, 1});
  return n && *n == 0;
}

TEST(LiveConnections, ShutdownEndsOpenStreams) {
  LiveConnections live;
  auto [a, b] = MemoryStream::Pair();
  LiveConnections::Entry entry(live);
  entry.Opened(*b);
  live.Shutdown();
  EXPECT_TRUE(PeerSeesEnd(*a));
}

TEST(LiveConnections, AStreamOpenedAfterShutdownEndsAtOnce) {
  LiveConnections live;
  live.Shutdown();
  auto [a, b] = MemoryStream::Pair();
  LiveConnections::Entry entry(live);
  entry.Opened(*b);
  EXPECT_TRUE(PeerSeesEnd(*a));
}

TEST(LiveConnections, ShutdownReachesASocketInItsHandshake) {
  std::array<int, 2> sv{};
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv.data()), 0);
  LiveConnections live;
  LiveConnections::Entry entry(live);
  entry.Handshaking(sv[1]);
  ::close(sv[1]);   // the handshake failed and closed its socket: the number may be reused
  live.Shutdown();  // reaches the socket through the entry's own descriptor
  // The entry's duplicate still holds the socket open: only the shutdown ends the stream.
  pollfd p{sv[0], POLLIN, 0};
  ASSERT_EQ(::poll(&p, 1, 5000), 1);
  char c = 0;
  EXPECT_EQ(::read(sv[0], &c, 1), 0);
  ::close(sv[0]);
}

TEST(LiveConnections, WaitCountsWhatIsLeft) {
  LiveConnections live;
  auto entry = std::make_unique<LiveConnections::Entry>(live);
  EXPECT_EQ(live.Wait(steady_clock::now() + milliseconds(10)), 1u);
  std::thread ender([&] {
    std::this_thread::sleep_for(milliseconds(20));
    entry.reset();
  });
  EXPECT_EQ(live.Wait(steady_clock::now() + std::chrono::seconds(10)), 0u);
  ender.join();
  EXPECT_EQ(live.size(), 0u);
}

}  // namespace
}  // namespace classicd
