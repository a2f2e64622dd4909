#include "daemons/classicd/reload.h"

#include <gtest/gtest.h>

namespace classicd {
namespace {

TEST(PlanReload, LimitsApplyAtOnceAndTheRestNeedsARestart) {
  Options before;
  Options after = before;
  EXPECT_TRUE(PlanReload(before, after).applied.empty());
  EXPECT_TRUE(PlanReload(before, after).restart.empty());
  after.max_connections = 7;
  after.idle_timeout = 30;
  after.port = 2000;
  after.mode_text = "forking";
  const ReloadPlan plan = PlanReload(before, after);
  EXPECT_EQ(plan.applied, (std::vector<std::string>{"max_connections=7", "idle_timeout=30"}));
  EXPECT_EQ(plan.restart, (std::vector<std::string>{"mode", "port"}));
}

TEST(PlanReload, TheCrlAndTheExposureOverrideApplyAtOnce) {
  Options before;
  Options after = before;
  after.ssl_crlfile = "/etc/rpyc/revoked.pem";
  after.allow_unauthenticated_remote = true;
  const ReloadPlan plan = PlanReload(before, after);
  EXPECT_EQ(plan.applied, (std::vector<std::string>{"ssl_crlfile=/etc/rpyc/revoked.pem",
                                                    "allow_unauthenticated_remote=true"}));
  EXPECT_TRUE(plan.restart.empty());
}

TEST(PlanReload, TheLogLevelAppliesAtOnce) {
  Options before;
  Options after = before;
  after.log_level = "debug";
  const ReloadPlan plan = PlanReload(before, after);
  EXPECT_EQ(plan.applied, (std::vector<std::string>{"log_level=debug"}));
  EXPECT_TRUE(plan.restart.empty());
}

}  // namespace
}  // namespace classicd
