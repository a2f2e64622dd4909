#include "libcore/server/inherited.h"

#include <vector>

#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "libcore/testing/sockets.h"

namespace core::server {
namespace {

daemon::InheritedSocket Inherit(UniqueFd fd, int type, bool listening) {
  daemon::InheritedSocket s;
  s.fd = std::move(fd);
  s.type = type;
  s.listening = listening;
  return s;
}

TEST(InheritedTest, ListeningSocketsAndTheFirstConnectedOneAreTaken) {
  auto l1 = core::testing::ListenLoopback();
  auto l2 = core::testing::ListenLoopback();
  auto p1 = core::testing::MakeSocketPair();
  auto p2 = core::testing::MakeSocketPair();
  UniqueFd udp(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  const int l1_fd = l1.fd.get(), l2_fd = l2.fd.get(), c1_fd = p1.server.get();
  std::vector<daemon::InheritedSocket> sockets;
  sockets.push_back(Inherit(std::move(udp), SOCK_DGRAM, false));
  sockets.push_back(Inherit(std::move(l1.fd), SOCK_STREAM, true));
  sockets.push_back(Inherit(std::move(p1.server), SOCK_STREAM, false));
  sockets.push_back(Inherit(std::move(p2.server), SOCK_STREAM, false));
  sockets.push_back(Inherit(std::move(l2.fd), SOCK_STREAM, true));
  auto taken = TakeStreamSockets(sockets);
  ASSERT_EQ(taken.listening.size(), 2U);
  EXPECT_EQ(taken.listening[0].get(), l1_fd);
  EXPECT_EQ(taken.listening[1].get(), l2_fd);
  EXPECT_EQ(taken.connected.get(), c1_fd);
  // Left behind: the datagram socket and the second connected one.
  EXPECT_TRUE(sockets[0].fd);
  EXPECT_FALSE(sockets[1].fd);
  EXPECT_FALSE(sockets[2].fd);
  EXPECT_TRUE(sockets[3].fd);
  EXPECT_FALSE(sockets[4].fd);
}

TEST(InheritedTest, NothingInheritedTakesNothing) {
  std::vector<daemon::InheritedSocket> none;
  auto taken = TakeStreamSockets(none);
  EXPECT_TRUE(taken.listening.empty());
  EXPECT_FALSE(taken.connected);
}

TEST(InheritedTest, AConnectedSocketIsMadeBlockingAndNamesItsPeer) {
  auto l = core::testing::ListenLoopback();
  ASSERT_TRUE(l.fd);
  UniqueFd client = core::testing::ConnectLoopback(l.port);
  ASSERT_TRUE(client);
  UniqueFd conn(::accept4(l.fd.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK));
  ASSERT_TRUE(conn);
  auto peer = PrepareConnected(conn.get());
  EXPECT_EQ(::fcntl(conn.get(), F_GETFL) & O_NONBLOCK, 0);
  ASSERT_EQ(peer.family(), AF_INET);
  EXPECT_EQ(peer.length(), sizeof(sockaddr_in));
  sockaddr_in local{};
  socklen_t len = sizeof local;
  ASSERT_EQ(::getsockname(client.get(), reinterpret_cast<sockaddr*>(&local), &len), 0);
  EXPECT_EQ(peer.port(), ntohs(local.sin_port));
}

}  // namespace
}  // namespace core::server
