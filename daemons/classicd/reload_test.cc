#include "daemons/classicd/reload.h"

#include <gtest/gtest.h>

namespace classicd {
namespace {

TEST(PlanReload, LimitsApplyAtOnceAndTheRestNeedsARestart) {
  Options before;
  Options after = before;
  EXPECT_TRUE(PlanReload(before, before, after).applied.empty());
  EXPECT_TRUE(PlanReload(before, before, after).restart.empty());
  after.max_connections = 7;
  after.idle_timeout = 30;
  after.port = 2000;
  after.mode_text = "forking";
  const ReloadPlan plan = PlanReload(before, before, after);
  EXPECT_EQ(plan.applied,
            (std::vector<std::string>{"max_connections 1000 -> 7", "idle_timeout 0 -> 30"}));
  EXPECT_EQ(plan.restart,
            (std::vector<std::string>{"mode threaded -> forking", "port -1 -> 2000"}));
}

// A key that needs a restart is compared with the options the daemon started with: it is
// reported at every reload until the restart; an applied key only when it changes again.
TEST(PlanReload, PendingRestartsAreReportedUntilTheRestart) {
  Options started;
  Options running = started;
  running.max_connections = 7;  // applied by an earlier reload
  Options after = running;
  after.port = 2000;
  PlanReload(running, started, after);
  const ReloadPlan again = PlanReload(running, started, after);
  EXPECT_TRUE(again.applied.empty());
  EXPECT_EQ(again.restart, (std::vector<std::string>{"port -1 -> 2000"}));
}

TEST(PlanReload, TheCrlAndTheExposureOverrideApplyAtOnce) {
  Options before;
  Options after = before;
  after.ssl_crlfile = "/etc/rpyc/revoked.pem";
  after.allow_unauthenticated_remote = true;
  const ReloadPlan plan = PlanReload(before, before, after);
  EXPECT_EQ(plan.applied, (std::vector<std::string>{"ssl_crlfile \"\" -> /etc/rpyc/revoked.pem",
                                                    "allow_unauthenticated_remote false -> true"}));
  EXPECT_TRUE(plan.restart.empty());
}

TEST(PlanReload, TheLogLevelAppliesAtOnce) {
  Options before;
  Options after = before;
  after.log_level = "debug";
  const ReloadPlan plan = PlanReload(before, before, after);
  EXPECT_EQ(plan.applied, (std::vector<std::string>{"log_level info -> debug"}));
  EXPECT_TRUE(plan.restart.empty());
}

}  // namespace
}  // namespace classicd
