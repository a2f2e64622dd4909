#include "libcore/registrar/registrar.h"

#include <sstream>

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>

#include "libcore/brine/brine.h"
#include "libcore/daemon/sockets.h"

namespace core::registrar {
namespace {

std::string Hex(std::string_view hex) {
  std::string out;
  std::istringstream in{std::string(hex)};
  std::string byte;
  while (in >> byte) out.push_back(static_cast<char>(std::stoi(byte, nullptr, 16)));
  return out;
}

TEST(Registrar, GoldenRequests) {
  // docs/protocol.md §10: ('RPYC','REGISTER',(('SLAVE',),18812)) and ('RPYC','UNREGISTER',(18812,))
  EXPECT_EQ(EncodeRegister({"SLAVE"}, brine::Value(18812)),
            Hex("12 08 0d 52 50 59 43 08 0e 08 52 45 47 49 53 54 45 52 11 10 08 0e 05 53 4c 41 56 "
                "45 16 05 31 38 38 31 32"));
  EXPECT_EQ(EncodeUnregister(brine::Value(18812)),
            Hex("12 08 0d 52 50 59 43 08 0e 0a 55 4e 52 45 47 49 53 54 45 52 10 16 05 31 38 38 31 "
                "32"));
}

// The extension (docs/differences.md §3): the advertised host as one more argument.
TEST(Registrar, AdvertisedHostGoesInTheRequest) {
  auto reg = brine::Load(EncodeRegister({"SLAVE", "X"}, brine::Value(18812), "203.0.113.7"));
  ASSERT_TRUE(reg);
  EXPECT_EQ(reg->Repr(), "('RPYC', 'REGISTER', (('SLAVE', 'X'), 18812, '203.0.113.7'))");
  auto unreg = brine::Load(EncodeUnregister(brine::Value(18812), "203.0.113.7"));
  ASSERT_TRUE(unreg);
  EXPECT_EQ(unreg->Repr(), "('RPYC', 'UNREGISTER', (18812, '203.0.113.7'))");
}

// A registry host that does not resolve (DNS not up at boot) does not end registration: the
// lookup is retried, with a growing delay, and the registrar keeps running.
TEST(Registrar, UnresolvableRegistryIsLookedUpAgain) {
  auto loop = daemon::EventLoop::Create();
  ASSERT_TRUE(loop);
  Options o;
  o.registry_host = "no such host.invalid";
  o.retry = std::chrono::milliseconds(5);
  o.interval = std::chrono::milliseconds(40);
  auto r = Registrar::Create(*loop, o, log::Logger());
  ASSERT_TRUE(r);
  EXPECT_FALSE((*r)->resolved());
  (*r)->Start();
  daemon::Timer stop(*loop, [&] { loop->Break(); });
  stop.Start(std::chrono::milliseconds(400));
  ASSERT_TRUE(loop->Run());
  EXPECT_GE((*r)->failures(), 3u);  // 5, 10, 20, 40, 40... ms apart
  EXPECT_LE((*r)->failures(), 20u);
  EXPECT_EQ((*r)->successes(), 0u);
  (*r)->Stop();
}

// A silent registry: the first attempt times out, and the retry comes after `retry`, not after
// `interval`. Then the socket answers 'OK' and the registrar counts a success.
TEST(Registrar, RetriesSoonAfterFailureThenSucceeds) {
  auto loop = daemon::EventLoop::Create();
  ASSERT_TRUE(loop);
  auto server = daemon::BindUdp("127.0.0.1", 0);
  ASSERT_TRUE(server);
  Options o;
  o.registry_host = "127.0.0.1";
  o.registry_port = daemon::LocalPort(server->get());
  o.timeout = std::chrono::milliseconds(50);
  o.retry = std::chrono::milliseconds(10);
  auto r = Registrar::Create(*loop, o, log::Logger());
  ASSERT_TRUE(r);
  int requests = 0;
  daemon::IoWatch watch(*loop, server->get(), EV_READ, true, [&](short) {
    char buf[1500];
    sockaddr_storage from{};
    socklen_t len = sizeof from;
    const ssize_t n =
        recvfrom(server->get(), buf, sizeof buf, 0, reinterpret_cast<sockaddr*>(&from), &len);
    ASSERT_GT(n, 0);
    EXPECT_EQ(std::string(buf, static_cast<size_t>(n)), EncodeRegister({"SLAVE"}, o.port));
    if (++requests == 2) {
      const std::string ok = brine::Dump(brine::MakeStr("OK"));
      sendto(server->get(), ok.data(), ok.size(), 0, reinterpret_cast<sockaddr*>(&from), len);
    }
  });
  watch.Start();
  daemon::Timer stop(*loop, [&] {
    if ((*r)->successes() > 0) loop->Break();
  });
  stop.Start(std::chrono::milliseconds(5), true);
  (*r)->Start();
  ASSERT_TRUE(loop->Run());
  EXPECT_EQ(requests, 2);
  EXPECT_EQ((*r)->failures(), 1u);
  EXPECT_EQ((*r)->successes(), 1u);
  (*r)->Stop();
}

}  // namespace
}  // namespace core::registrar
