#include "daemons/classicd/admission.h"

#include <thread>
#include <vector>

#include <gtest/gtest.h>

namespace classicd {
namespace {

using Verdict = Admission::Verdict;

TEST(Admission, CapsConnectionsInAll) {
  Admission a({/*max_connections=*/2, /*max_per_peer=*/0});
  EXPECT_TRUE(a.Admit("10.0.0.1").admitted());
  EXPECT_TRUE(a.Admit("10.0.0.2").admitted());
  const auto refused = a.Admit("10.0.0.3");
  EXPECT_EQ(refused.verdict, Verdict::kTooMany);
  EXPECT_EQ(refused.open, 2);
  EXPECT_EQ(a.active(), 2);
  EXPECT_EQ(a.Release("10.0.0.1"), 1);
  EXPECT_TRUE(a.Admit("10.0.0.3").admitted());
  EXPECT_EQ(a.served(), 1u);
}

TEST(Admission, CapsConnectionsFromOnePeer) {
  Admission a({/*max_connections=*/100, /*max_per_peer=*/2});
  EXPECT_TRUE(a.Admit("10.0.0.1").admitted());
  EXPECT_TRUE(a.Admit("10.0.0.1").admitted());
  const auto refused = a.Admit("10.0.0.1");
  EXPECT_EQ(refused.verdict, Verdict::kTooManyFromPeer);
  EXPECT_EQ(refused.open, 2);
  EXPECT_TRUE(a.Admit("10.0.0.2").admitted());  // another peer is not affected
  a.Release("10.0.0.1");
  EXPECT_TRUE(a.Admit("10.0.0.1").admitted());
}

TEST(Admission, ForgetsPeersWithNothingOpen) {
  Admission a({10, 1});
  ASSERT_TRUE(a.Admit("10.0.0.1").admitted());
  EXPECT_EQ(a.Admit("10.0.0.2").open, 1);  // one open in all before it
  EXPECT_EQ(a.peers(), 2u);
  a.Release("10.0.0.1");
  a.Release("10.0.0.2");
  EXPECT_EQ(a.peers(), 0u);
  EXPECT_EQ(a.active(), 0);
  // A refusal leaves no entry behind either.
  Admission none({10, 1});
  ASSERT_TRUE(none.Admit("10.0.0.9").admitted());
  EXPECT_FALSE(none.Admit("10.0.0.9").admitted());
  none.Release("10.0.0.9");
  EXPECT_EQ(none.peers(), 0u);
}

TEST(Admission, NewLimitsApplyToLaterConnections) {
  Admission a({1, 0});
  ASSERT_TRUE(a.Admit("10.0.0.9").admitted());
  EXPECT_EQ(a.Admit("10.0.0.9").verdict, Verdict::kTooMany);
  a.set_limits({3, 0});
  EXPECT_TRUE(a.Admit("10.0.0.9").admitted());
  a.set_limits({1, 0});  // lowered below what is open: nothing is closed, nothing new comes in
  EXPECT_EQ(a.active(), 2);
  EXPECT_EQ(a.Admit("10.0.0.9").verdict, Verdict::kTooMany);
  a.set_limits({10, 2});
  EXPECT_EQ(a.Admit("10.0.0.9").verdict, Verdict::kTooManyFromPeer);
}

TEST(Admission, CountsStayExactAcrossThreads) {
  Admission a({1'000'000, 0});
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&a, t] {
      const std::string host = "10.0.0." + std::to_string(t % 2);
      for (int i = 0; i < 1000; ++i) {
        ASSERT_TRUE(a.Admit(host).admitted());
        a.Release(host);
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(a.active(), 0);
  EXPECT_EQ(a.served(), 4000u);
  EXPECT_EQ(a.peers(), 0u);
}

TEST(Admission, CapsPeersByDefault) {
  // Idle connects from one address must not take every slot before authentication.
  Admission a(Admission::Limits{});
  int admitted = 0;
  for (int i = 0; i < 1000 && a.Admit("10.0.0.1").admitted(); ++i) ++admitted;
  EXPECT_EQ(admitted, 64);
  EXPECT_TRUE(a.Admit("10.0.0.2").admitted());
}

TEST(Admission, PeerKeys) {
  EXPECT_EQ(Admission::PeerKey("10.0.0.1"), "10.0.0.1");
  EXPECT_EQ(Admission::PeerKey("fd00::1"), "fd00::/64");
  EXPECT_EQ(Admission::PeerKey("fd00::1:2:3:4"), "fd00::/64");
  EXPECT_EQ(Admission::PeerKey("fd00:0:0:7::1"), "fd00:0:0:7::/64");
  EXPECT_EQ(Admission::PeerKey("::1"), "::/64");
  EXPECT_EQ(Admission::PeerKey("::ffff:10.0.0.1"), "10.0.0.1");
  EXPECT_EQ(Admission::PeerKey("unix"), "");
  EXPECT_EQ(Admission::PeerKey("stdio"), "");
}

TEST(Admission, CountsAnIpv6SubnetAsOnePeer) {
  Admission a({100, 2, 0});
  int admitted = 0;
  for (int i = 1; i <= 19; ++i) {
    const std::string host = "fd00::" + std::to_string(i);
    for (int j = 0; j < 2; ++j) admitted += a.Admit(host).admitted() ? 1 : 0;
  }
  EXPECT_EQ(admitted, 2);
  EXPECT_EQ(a.Admit("fd00:0:0:1::1").verdict, Verdict::kAdmitted);  // another /64
  a.Release("fd00::7");  // any address of the /64 counts out
  EXPECT_TRUE(a.Admit("fd00::19").admitted());
}

TEST(Admission, CountsAMappedAddressAsItsIpv4Address) {
  Admission a({100, 2, 0});
  ASSERT_TRUE(a.Admit("10.0.0.1").admitted());
  ASSERT_TRUE(a.Admit("::ffff:10.0.0.1").admitted());
  EXPECT_EQ(a.Admit("10.0.0.1").verdict, Verdict::kTooManyFromPeer);
  EXPECT_EQ(a.Admit("::ffff:10.0.0.1").verdict, Verdict::kTooManyFromPeer);
  a.Release("::ffff:10.0.0.1");
  EXPECT_TRUE(a.Admit("10.0.0.1").admitted());
}

TEST(Admission, NoPerPeerCapForAHostWithoutAnAddress) {
  Admission a({100, 1, 0});
  EXPECT_TRUE(a.Admit("unix").admitted());
  EXPECT_TRUE(a.Admit("unix").admitted());
  EXPECT_EQ(a.active(), 2);
  EXPECT_EQ(a.peers(), 0u);
  a.Release("unix");
  EXPECT_EQ(a.active(), 1);
}

TEST(Admission, CapsHandshakes) {
  Admission a({100, 0, 2});
  const auto first = a.Admit("10.0.0.1", /*handshake=*/true);
  ASSERT_TRUE(first.admitted());
  ASSERT_NE(first.handshake, 0u);
  const auto second = a.Admit("10.0.0.2", /*handshake=*/true);
  ASSERT_TRUE(second.admitted());
  EXPECT_NE(second.handshake, first.handshake);
  const auto refused = a.Admit("10.0.0.3", /*handshake=*/true);
  EXPECT_EQ(refused.verdict, Verdict::kTooManyHandshakes);
  EXPECT_EQ(refused.open, 2);
  const auto plain = a.Admit("10.0.0.3");  // no handshake to wait for
  EXPECT_TRUE(plain.admitted());
  EXPECT_EQ(plain.handshake, 0u);
  EXPECT_EQ(a.handshaking(), 2);
  a.HandshakeEnded(first.handshake);  // the first is authenticated and stays open
  a.HandshakeEnded(first.handshake);  // once only
  EXPECT_EQ(a.handshaking(), 1);
  EXPECT_TRUE(a.Admit("10.0.0.4", /*handshake=*/true).admitted());
  EXPECT_EQ(a.active(), 4);
  a.set_limits({100, 0, 0});  // 0: no cap
  EXPECT_TRUE(a.Admit("10.0.0.5", /*handshake=*/true).admitted());
}

TEST(Admission, AHandshakePastItsDeadlineCountsNoLonger) {
  Admission a({100, 0, 1});
  const auto first = a.Admit("10.0.0.1", /*handshake=*/true);
  ASSERT_TRUE(first.admitted());
  // An authenticator still running within its deadline holds the one slot.
  a.HandshakeDeadline(first.handshake, std::chrono::steady_clock::now() + std::chrono::hours(1));
  EXPECT_EQ(a.Admit("10.0.0.2", /*handshake=*/true).verdict, Verdict::kTooManyHandshakes);
  // Its deadline passed: the slot is free although it never returned.
  a.HandshakeDeadline(first.handshake, std::chrono::steady_clock::now());
  const auto second = a.Admit("10.0.0.2", /*handshake=*/true);
  EXPECT_TRUE(second.admitted());
  EXPECT_EQ(a.handshaking(), 1);
  a.HandshakeEnded(first.handshake);  // when it does return: nothing more is counted out
  EXPECT_EQ(a.handshaking(), 1);
  a.HandshakeEnded(second.handshake);
  EXPECT_EQ(a.handshaking(), 0);
}

TEST(SharedRateLimit, SaysWhatWasSuppressed) {
  SharedRateLimit limit(2, 10.0);
  uint64_t suppressed = 99;
  EXPECT_TRUE(limit.Allow(0, &suppressed));
  EXPECT_EQ(suppressed, 0u);
  EXPECT_TRUE(limit.Allow(1, &suppressed));
  EXPECT_FALSE(limit.Allow(2, &suppressed));
  EXPECT_FALSE(limit.Allow(3, &suppressed));
  EXPECT_TRUE(limit.Allow(10, &suppressed));
  EXPECT_EQ(suppressed, 2u);
  EXPECT_TRUE(limit.Allow(11, &suppressed));
  EXPECT_EQ(suppressed, 0u);
}

}  // namespace
}  // namespace classicd
