#include "libcore/server/loop_acceptor.h"

#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <unistd.h>

#include "libcore/testing/run_loop.h"
#include "libcore/testing/sockets.h"

namespace core::server {
namespace {

using core::testing::ConnectLoopback;
using core::testing::ListenLoopback;
using core::testing::NewLoop;
using core::testing::ReadSome;
using core::testing::RunLoopUntil;

// A handler that writes the listener's index and keeps the connection's family.
struct Greeter {
  std::vector<size_t> accepted;
  std::vector<int> families;
  LoopAcceptor::Handler Handler() {
    return [this](UniqueFd fd, const sockaddr_storage& peer, socklen_t len, size_t listener) {
      EXPECT_GT(len, 0U);
      families.push_back(peer.ss_family);
      accepted.push_back(listener);
      const char c = static_cast<char>('0' + listener);
      EXPECT_EQ(::write(fd.get(), &c, 1), 1);
    };
  }
};

TEST(LoopAcceptorTest, HandsEveryListenersConnectionsToTheHandler) {
  auto loop = NewLoop();
  auto a = ListenLoopback();
  auto b = ListenLoopback();
  ASSERT_TRUE(a.fd && b.fd);
  Greeter g;
  LoopAcceptor acceptor(loop, {a.fd.get(), b.fd.get()}, g.Handler(), {});
  acceptor.Start();
  UniqueFd ca = ConnectLoopback(a.port);
  UniqueFd cb1 = ConnectLoopback(b.port);
  UniqueFd cb2 = ConnectLoopback(b.port);
  EXPECT_TRUE(RunLoopUntil(loop, [&] { return g.accepted.size() == 3; }));
  EXPECT_EQ(ReadSome(ca.get(), 5000), "0");
  EXPECT_EQ(ReadSome(cb1.get(), 5000), "1");
  EXPECT_EQ(ReadSome(cb2.get(), 5000), "1");
  EXPECT_EQ(std::count(g.families.begin(), g.families.end(), AF_INET), 3);
}

TEST(LoopAcceptorTest, StopInTheHandlerLeavesTheBacklogAlone) {
  auto loop = NewLoop();
  auto l = ListenLoopback();
  ASSERT_TRUE(l.fd);
  Greeter g;
  std::unique_ptr<LoopAcceptor> acceptor;
  auto greet = g.Handler();
  acceptor = std::make_unique<LoopAcceptor>(
      loop, std::vector<int>{l.fd.get()},
      [&](UniqueFd fd, const sockaddr_storage& peer, socklen_t len, size_t listener) {
        greet(std::move(fd), peer, len, listener);
        acceptor->Stop();  // oneshot
      },
      LoopAcceptor::Options{});
  // Three connections wait in the backlog before the loop runs: one readiness could take all.
  UniqueFd c1 = ConnectLoopback(l.port);
  UniqueFd c2 = ConnectLoopback(l.port);
  UniqueFd c3 = ConnectLoopback(l.port);
  acceptor->Start();
  EXPECT_TRUE(RunLoopUntil(loop, [&] { return !g.accepted.empty(); }));
  EXPECT_EQ(g.accepted.size(), 1U);
  // Nothing more is accepted: the listener still holds the other two.
  for (int i = 0; i < 20; ++i) event_base_loop(loop.base(), EVLOOP_ONCE | EVLOOP_NONBLOCK);
  EXPECT_EQ(g.accepted.size(), 1U);
  int left = 0;
  for (;;) {
    UniqueFd fd(::accept4(l.fd.get(), nullptr, nullptr, SOCK_CLOEXEC));
    if (!fd) break;
    ++left;
  }
  EXPECT_EQ(left, 2);
}

TEST(LoopAcceptorTest, AtMostMaxPerWakeConnectionsPerReadiness) {
  auto loop = NewLoop();
  auto l = ListenLoopback();
  ASSERT_TRUE(l.fd);
  Greeter g;
  LoopAcceptor::Options o;
  o.max_per_wake = 2;
  LoopAcceptor acceptor(loop, {l.fd.get()}, g.Handler(), o);
  std::vector<UniqueFd> clients;
  for (int i = 0; i < 5; ++i) clients.push_back(ConnectLoopback(l.port));
  acceptor.Start();
  EXPECT_TRUE(RunLoopUntil(loop, [&] { return !g.accepted.empty(); }));
  EXPECT_EQ(g.accepted.size(), 2U);  // one readiness
  EXPECT_TRUE(RunLoopUntil(loop, [&] { return g.accepted.size() == 5; }));
}

TEST(LoopAcceptorTest, AnAcceptErrorIsReportedAndRetriedAtTheNextReadiness) {
  auto loop = NewLoop();
  auto l = ListenLoopback();
  ASSERT_TRUE(l.fd);
  Greeter g;
  std::vector<std::string> errors;
  LoopAcceptor::Options o;
  o.on_accept_error = [&](size_t listener, const Error& e) {
    EXPECT_EQ(listener, 0U);
    errors.push_back(e.message());
  };
  LoopAcceptor acceptor(loop, {l.fd.get()}, g.Handler(), o);
  acceptor.Start();
  UniqueFd client(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  ASSERT_TRUE(client);
  auto no_fds = std::make_unique<core::testing::NoFreeDescriptors>();  // accept(): EMFILE
  ASSERT_TRUE(no_fds->ok());
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  sa.sin_port = htons(l.port);
  ASSERT_EQ(::connect(client.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa), 0);
  EXPECT_TRUE(RunLoopUntil(loop, [&] { return errors.size() >= 2; }));  // and tried again
  no_fds.reset();
  EXPECT_EQ(errors.front(), "Too many open files");
  EXPECT_TRUE(RunLoopUntil(loop, [&] { return g.accepted.size() == 1; }));
  EXPECT_EQ(ReadSome(client.get(), 5000), "0");
}

}  // namespace
}  // namespace core::server
