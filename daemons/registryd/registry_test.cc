#include "daemons/registryd/registry.h"

#include <gtest/gtest.h>

#include "libcore/brine/brine.h"

namespace registryd {
namespace {

std::string Port(int64_t p) { return core::brine::Dump(core::brine::Int(p)); }
Server S(const std::string& host, int64_t port) { return Server{host, Port(port)}; }

std::vector<std::string> Hosts(const std::vector<Server>& v) {
  std::vector<std::string> out;
  for (const auto& s : v) out.push_back(s.host + ":" + s.port);
  return out;
}

TEST(Registry, QueryReturnsOldestRegistrationFirst) {
  Registry r(100, 240);
  EXPECT_EQ(r.Register("SLAVE", S("10.0.0.2", 1), 1.0), Registry::AddResult::kAdded);
  EXPECT_EQ(r.Register("SLAVE", S("10.0.0.1", 1), 2.0), Registry::AddResult::kAdded);
  EXPECT_EQ(Hosts(r.Query("SLAVE", 3.0)),
            (std::vector<std::string>{"10.0.0.2:" + Port(1), "10.0.0.1:" + Port(1)}));
  // A refresh moves the server to the newest position.
  EXPECT_EQ(r.Register("SLAVE", S("10.0.0.2", 1), 4.0), Registry::AddResult::kRefreshed);
  EXPECT_EQ(r.Query("SLAVE", 5.0).front().host, "10.0.0.1");
  EXPECT_EQ(r.entries(), 2u);
  EXPECT_TRUE(r.Query("NOPE", 5.0).empty());
}

TEST(Registry, OneHostCannotFillTheRegistry) {
  Registry r(100, 240, 3);
  EXPECT_EQ(r.Register("A", S("10.0.0.9", 1), 0), Registry::AddResult::kAdded);
  EXPECT_EQ(r.Register("B", S("10.0.0.9", 1), 0), Registry::AddResult::kAdded);
  EXPECT_EQ(r.Register("A", S("10.0.0.9", 2), 0), Registry::AddResult::kAdded);
  EXPECT_EQ(r.Register("C", S("10.0.0.9", 1), 0), Registry::AddResult::kRefusedHost);
  EXPECT_EQ(r.services(), 2u);  // the refused name left nothing behind
  // Refreshing still works at the cap, and another host is not affected.
  EXPECT_EQ(r.Register("A", S("10.0.0.9", 1), 1), Registry::AddResult::kRefreshed);
  EXPECT_EQ(r.Register("C", S("10.0.0.1", 1), 1), Registry::AddResult::kAdded);
  EXPECT_EQ(r.entries_of("10.0.0.9"), 3u);
  // Entries that go (unregistered, pruned) give the host room again.
  EXPECT_EQ(r.Unregister(S("10.0.0.9", 2)), 1u);
  EXPECT_EQ(r.entries_of("10.0.0.9"), 2u);
  EXPECT_EQ(r.Register("C", S("10.0.0.9", 1), 2), Registry::AddResult::kAdded);
  EXPECT_EQ(r.Prune(300), 4u);
  EXPECT_EQ(r.entries_of("10.0.0.9"), 0u);
  EXPECT_EQ(r.entries_of("10.0.0.1"), 0u);
}

TEST(Registry, HostAndPortTogetherMakeTheKey) {
  Registry r(100, 240);
  r.Register("A", S("h", 1), 0);
  r.Register("A", S("h", 2), 0);
  r.Register("A", Server{"h", core::brine::Dump(core::brine::Str{"1"})}, 0);  // str port
  EXPECT_EQ(r.Query("A", 0).size(), 3u);
}

TEST(Registry, QueryPrunesOnlyThatNameListNever) {
  Registry r(100, 10);
  r.Register("OLD", S("h", 1), 0);
  r.Register("NEW", S("h", 2), 0);
  r.Register("NEW", S("h", 3), 8);
  size_t pruned = 0;
  EXPECT_EQ(r.Query("NEW", 11, &pruned).size(), 1u);
  EXPECT_EQ(pruned, 1u);
  // LIST does not prune: OLD is still listed until a QUERY or the timer.
  EXPECT_EQ(r.List(std::nullopt), (std::vector<std::string>{"OLD", "NEW"}));
  EXPECT_TRUE(r.Query("OLD", 11).empty());
  EXPECT_EQ(r.List(std::nullopt), (std::vector<std::string>{"NEW"}));
}

TEST(Registry, TimerPruneDropsStaleEverywhere) {
  Registry r(100, 10);
  r.Register("A", S("h", 1), 0);
  r.Register("B", S("h", 1), 5);
  r.Register("C", S("h", 2), 0);
  r.Register("C", S("h", 3), 9);
  EXPECT_EQ(r.Prune(10.5), 2u);
  EXPECT_EQ(r.List(std::nullopt), (std::vector<std::string>{"B", "C"}));
  EXPECT_EQ(r.entries(), 2u);
  EXPECT_EQ(r.Prune(100), 2u);
  EXPECT_EQ(r.services(), 0u);
  EXPECT_EQ(r.entries(), 0u);
}

TEST(Registry, UnregisterRemovesFromEveryServiceAndEmptiesNames) {
  Registry r(100, 240);
  r.Register("A", S("h", 1), 0);
  r.Register("B", S("h", 1), 0);
  r.Register("B", S("g", 1), 0);
  EXPECT_EQ(r.Unregister(S("h", 1)), 2u);
  EXPECT_EQ(r.List(std::nullopt), (std::vector<std::string>{"B"}));
  EXPECT_EQ(r.Unregister(S("h", 1)), 0u);
  EXPECT_EQ(r.entries(), 1u);
}

TEST(Registry, ListOrderAndFilterHost) {
  Registry r(100, 240);
  r.Register("Z", S("1.1.1.1", 1), 0);
  r.Register("A", S("2.2.2.2", 1), 0);
  r.Register("M", S("1.1.1.1", 2), 0);
  EXPECT_EQ(r.List(std::nullopt), (std::vector<std::string>{"Z", "A", "M"}));
  EXPECT_EQ(r.List("1.1.1.1"), (std::vector<std::string>{"Z", "M"}));
  EXPECT_TRUE(r.List("9.9.9.9").empty());
  // A name that empties and comes back goes to the end, like a Python dict key.
  r.Unregister(S("1.1.1.1", 1));
  r.Register("Z", S("1.1.1.1", 1), 1);
  EXPECT_EQ(r.List(std::nullopt), (std::vector<std::string>{"A", "M", "Z"}));
}

TEST(Registry, CapRefusesNewEntriesButAllowsRefresh) {
  Registry r(3, 240);
  EXPECT_EQ(r.Register("A", S("h", 1), 0), Registry::AddResult::kAdded);
  EXPECT_EQ(r.Register("B", S("h", 1), 0), Registry::AddResult::kAdded);
  EXPECT_EQ(r.Register("B", S("h", 2), 0), Registry::AddResult::kAdded);
  EXPECT_EQ(r.Register("C", S("h", 1), 0), Registry::AddResult::kRefused);
  EXPECT_EQ(r.Register("B", S("h", 3), 0), Registry::AddResult::kRefused);
  EXPECT_EQ(r.Register("A", S("h", 1), 1), Registry::AddResult::kRefreshed);
  EXPECT_EQ(r.entries(), 3u);
  EXPECT_EQ(r.services(), 2u);
  r.Unregister(S("h", 2));
  EXPECT_EQ(r.Register("C", S("h", 1), 0), Registry::AddResult::kAdded);
}

// Replies built outside the registry (merged with the etcd mirror) are kept by version.
TEST(Registry, VersionChangesWithEveryEntryChangeAndFreshUntilSaysWhenAQueryWouldPrune) {
  Registry r(10, 5);
  uint64_t v = r.version();
  const auto changed = [&] {
    const bool c = r.version() != v;
    v = r.version();
    return c;
  };
  r.Register("A", S("h", 1), 0);
  EXPECT_TRUE(changed());
  r.Register("A", S("h", 1), 1);  // a refresh reorders and restamps
  EXPECT_TRUE(changed());
  r.Query("A", 2);
  r.List(std::nullopt);
  EXPECT_FALSE(changed());
  EXPECT_EQ(r.Register("B", S("h", 1), 2), Registry::AddResult::kAdded);
  EXPECT_TRUE(changed());
  EXPECT_EQ(r.FreshUntil("A"), 6.0);  // refreshed at 1, timeout 5
  EXPECT_EQ(r.FreshUntil("NONE"), std::nullopt);
  EXPECT_EQ(r.Prune(6.0), 0u);
  EXPECT_EQ(r.Prune(6.5), 1u);
  EXPECT_TRUE(changed());
  r.set_timeout(6);
  EXPECT_TRUE(changed());
  r.Unregister(S("h", 1));
  EXPECT_TRUE(changed());
  r.Unregister(S("h", 1));
  EXPECT_FALSE(changed());
}

}  // namespace
}  // namespace registryd
