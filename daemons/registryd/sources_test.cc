#include "daemons/registryd/sources.h"

#include <gtest/gtest.h>

namespace registryd {
namespace {

TEST(TokenBucket, BurstThenRate) {
  TokenBucket b;
  int taken = 0;
  for (int i = 0; i < 1000; ++i) taken += b.Take(1, 20, 100, 0.0) ? 1 : 0;
  EXPECT_EQ(taken, 100);  // the burst
  EXPECT_FALSE(b.Take(1, 20, 100, 0.01));
  EXPECT_TRUE(b.Take(1, 20, 100, 0.06));  // 20 per second: one more after 50 ms
  EXPECT_FALSE(b.Take(1, 20, 100, 0.06));
  EXPECT_FALSE(b.Full(20, 100, 1.0));
  EXPECT_TRUE(b.Full(20, 100, 6.0));
}

TEST(TokenBucket, ZeroRateMeansNoLimit) {
  TokenBucket b;
  for (int i = 0; i < 10000; ++i) ASSERT_TRUE(b.Take(1500, 0, 0, 0.0));
}

TEST(Sources, EachSourceHasItsOwnBudgets) {
  SourceLimits l;
  l.registers_per_second = 2;
  l.reply_bytes_per_second = 1000;
  Sources sources(l);
  Sources::State& a = sources.Get("10.0.0.1", 0);
  int registers = 0;
  for (int i = 0; i < 50; ++i) registers += sources.AllowRegister(a, 0) ? 1 : 0;
  EXPECT_EQ(registers, 10);  // 5 s worth
  Sources::State& b = sources.Get("10.0.0.2", 0);
  EXPECT_TRUE(sources.AllowRegister(b, 0));
  // Replies: at least one largest reply (15,000 bytes) fits the burst, then 1000 bytes/s.
  EXPECT_TRUE(sources.AllowReply(a, 15000, 0));
  EXPECT_FALSE(sources.AllowReply(a, 1500, 0.5));
  EXPECT_TRUE(sources.AllowReply(a, 1500, 1.6));
  EXPECT_EQ(sources.size(), 2u);
}

TEST(Sources, IdleSourcesAreForgottenAndTheTableIsBounded) {
  Sources sources(SourceLimits{});
  Sources::State& a = sources.Get("10.0.0.1", 0);
  for (int i = 0; i < 10; ++i) a.warnings.Allow(0);
  sources.Get("10.0.0.2", 5);
  size_t reported = 0;
  EXPECT_EQ(sources.Sweep(5, [&](const std::string&, Sources::State&) { ++reported; }), 0u);
  EXPECT_EQ(sources.Sweep(12,
                          [&](const std::string& host, Sources::State& s) {
                            EXPECT_EQ(host, "10.0.0.1");
                            EXPECT_EQ(s.warnings.TakeSuppressed(), 5u);
                            ++reported;
                          }),
            1u);
  EXPECT_EQ(reported, 1u);
  EXPECT_EQ(sources.size(), 1u);
  for (size_t i = 0; i < kMaxSources + 100; ++i) sources.Get("h" + std::to_string(i), 20);
  EXPECT_EQ(sources.size(), kMaxSources);
  // Past the cap the newcomers share one state.
  EXPECT_EQ(&sources.Get("x1", 20), &sources.Get("x2", 20));
}

}  // namespace
}  // namespace registryd
