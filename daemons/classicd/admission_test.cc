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
  ASSERT_TRUE(none.Admit("h").admitted());
  EXPECT_FALSE(none.Admit("h").admitted());
  none.Release("h");
  EXPECT_EQ(none.peers(), 0u);
}

TEST(Admission, NewLimitsApplyToLaterConnections) {
  Admission a({1, 0});
  ASSERT_TRUE(a.Admit("h").admitted());
  EXPECT_EQ(a.Admit("h").verdict, Verdict::kTooMany);
  a.set_limits({3, 0});
  EXPECT_TRUE(a.Admit("h").admitted());
  a.set_limits({1, 0});  // lowered below what is open: nothing is closed, nothing new comes in
  EXPECT_EQ(a.active(), 2);
  EXPECT_EQ(a.Admit("h").verdict, Verdict::kTooMany);
  a.set_limits({10, 2});
  EXPECT_EQ(a.Admit("h").verdict, Verdict::kTooManyFromPeer);
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

}  // namespace
}  // namespace classicd
