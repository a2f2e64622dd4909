#include "libcore/transport/exposure.h"

#include <array>
#include <string>

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "libcore/base/unique_fd.h"

namespace core::transport {
namespace {

// The reach of a numeric address, through the same sockaddr a bound socket reports.
Reach ReachOfText(const std::string& host) {
  sockaddr_in in{};
  if (inet_pton(AF_INET, host.c_str(), &in.sin_addr) == 1) {
    in.sin_family = AF_INET;
    return ReachOf(reinterpret_cast<const sockaddr*>(&in), sizeof in);
  }
  sockaddr_in6 in6{};
  EXPECT_EQ(inet_pton(AF_INET6, host.c_str(), &in6.sin6_addr), 1) << host;
  in6.sin6_family = AF_INET6;
  return ReachOf(reinterpret_cast<const sockaddr*>(&in6), sizeof in6);
}

TEST(Exposure, ReachOfAddresses) {
  const struct {
    const char* host;
    Reach reach;
  } cases[] = {
      {"127.0.0.1", Reach::kLoopback},
      {"127.0.0.2", Reach::kLoopback},
      {"127.255.255.254", Reach::kLoopback},
      {"0.0.0.0", Reach::kRemote},
      {"10.0.0.1", Reach::kRemote},
      {"128.0.0.1", Reach::kRemote},
      {"126.255.255.255", Reach::kRemote},
      {"::1", Reach::kLoopback},
      {"::", Reach::kRemote},
      {"fe80::1", Reach::kRemote},
      {"::ffff:127.0.0.1", Reach::kLoopback},
      {"::ffff:127.9.8.7", Reach::kLoopback},
      {"::ffff:10.0.0.1", Reach::kRemote},
      {"::127.0.0.1", Reach::kRemote},  // v4-compatible
      {"::2", Reach::kRemote},
  };
  for (const auto& c : cases) EXPECT_EQ(ReachOfText(c.host), c.reach) << c.host;
  sockaddr unix_sa{};
  unix_sa.sa_family = AF_UNIX;
  EXPECT_EQ(ReachOf(&unix_sa, sizeof unix_sa), Reach::kLocal);
  EXPECT_EQ(ReachOf(nullptr, 0), Reach::kLocal);
  sockaddr odd{};
  odd.sa_family = AF_PACKET;
  EXPECT_EQ(ReachOf(&odd, sizeof odd), Reach::kRemote);
}

TEST(Exposure, DecisionTable) {
  const struct {
    Reach reach;
    bool verifies;
    bool allow;
    Verdict verdict;
  } cases[] = {
      {Reach::kLocal, false, false, Verdict::kOk},
      {Reach::kLocal, false, true, Verdict::kOk},
      {Reach::kLocal, true, false, Verdict::kOk},
      {Reach::kLoopback, false, false, Verdict::kOk},
      {Reach::kLoopback, false, true, Verdict::kOk},
      {Reach::kLoopback, true, false, Verdict::kOk},
      {Reach::kRemote, true, false, Verdict::kOk},
      {Reach::kRemote, true, true, Verdict::kOk},
      {Reach::kRemote, false, true, Verdict::kWarn},
      {Reach::kRemote, false, false, Verdict::kRefuse},
  };
  for (const auto& c : cases) {
    EXPECT_EQ(Decide(c.reach, c.verifies, c.allow), c.verdict)
        << static_cast<int>(c.reach) << " " << c.verifies << " " << c.allow;
  }
}

UniqueFd BoundTcp(int family, const std::string& host) {
  UniqueFd fd(::socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0));
  EXPECT_TRUE(fd);
  if (family == AF_INET) {
    sockaddr_in in{};
    in.sin_family = AF_INET;
    inet_pton(AF_INET, host.c_str(), &in.sin_addr);
    EXPECT_EQ(::bind(fd.get(), reinterpret_cast<sockaddr*>(&in), sizeof in), 0) << host;
  } else {
    sockaddr_in6 in6{};
    in6.sin6_family = AF_INET6;
    inet_pton(AF_INET6, host.c_str(), &in6.sin6_addr);
    EXPECT_EQ(::bind(fd.get(), reinterpret_cast<sockaddr*>(&in6), sizeof in6), 0) << host;
  }
  return fd;  // bound, never listening: nothing can connect to it
}

TEST(Exposure, CheckExposureReadsTheBoundAddress) {
  UniqueFd loop = BoundTcp(AF_INET, "127.0.0.5");
  UniqueFd any = BoundTcp(AF_INET, "0.0.0.0");
  int pair[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair), 0);
  UniqueFd u0(pair[0]), u1(pair[1]);
  int pipe_fds[2];
  ASSERT_EQ(::pipe2(pipe_fds, O_CLOEXEC), 0);
  UniqueFd p0(pipe_fds[0]), p1(pipe_fds[1]);

  const std::array<BoundSocket, 3> local = {BoundSocket{loop.get(), "[127.0.0.5]:1"},
                                            BoundSocket{u0.get(), "unix:/x"},
                                            BoundSocket{p0.get(), "stdio"}};
  auto ok = CheckExposure(local, {});
  ASSERT_TRUE(ok) << ok.error().message();
  EXPECT_TRUE(ok->empty());

  const std::array<BoundSocket, 2> remote = {BoundSocket{loop.get(), "[127.0.0.5]:1"},
                                             BoundSocket{any.get(), "inherited fd"}};
  auto refused = CheckExposure(remote, {});
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code(), Error::Code::kConfig);
  const std::string& m = refused.error().message();
  EXPECT_NE(m.find("listener inherited fd (0.0.0.0:"), std::string::npos) << m;
  EXPECT_NE(m.find("allow_unauthenticated_remote"), std::string::npos) << m;
  EXPECT_NE(m.find("--ssl-cafile"), std::string::npos) << m;

  auto verified = CheckExposure(remote, {.verifies_clients = true});
  ASSERT_TRUE(verified);
  EXPECT_TRUE(verified->empty());

  auto allowed = CheckExposure(remote, {.allow_unauthenticated_remote = true});
  ASSERT_TRUE(allowed);
  ASSERT_EQ(allowed->size(), 1u);
  EXPECT_NE(allowed->front().find("(allowed by allow_unauthenticated_remote)"), std::string::npos);

  const std::array<BoundSocket, 1> closed = {BoundSocket{-1, "gone"}};
  EXPECT_FALSE(CheckExposure(closed, {}));
}

TEST(Exposure, Ipv6Wildcard) {
  UniqueFd any6 = BoundTcp(AF_INET6, "::");
  UniqueFd loop6 = BoundTcp(AF_INET6, "::1");
  const std::array<BoundSocket, 1> wild = {BoundSocket{any6.get(), "[::]:1"}};
  const std::array<BoundSocket, 1> lo = {BoundSocket{loop6.get(), "[::1]:1"}};
  EXPECT_FALSE(CheckExposure(wild, {}));
  EXPECT_TRUE(CheckExposure(lo, {}));
}

}  // namespace
}  // namespace core::transport
