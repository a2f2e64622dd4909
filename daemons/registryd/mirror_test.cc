#include "daemons/registryd/mirror.h"

#include <gtest/gtest.h>

#include "daemons/registryd/request.h"
#include "libcore/brine/brine.h"
#include "libcore/etcd/entry.h"

namespace registryd {
namespace {

namespace brine = core::brine;

// A key and value as another registry writes them (through the layout's own encoder).
std::pair<std::string, std::string> Written(const std::string& name, const std::string& host,
                                            uint16_t port, std::vector<std::string> aliases,
                                            const std::string& site, const std::string& id) {
  core::etcd::Entry e{name, host, port, std::move(aliases), site, id};
  return {*core::etcd::EntryKey("/rpyc", e), core::etcd::EntryValue(e)};
}

std::vector<std::string> Hosts(const Mirror& m, const std::string& name) {
  std::vector<const Server*> out;
  m.Servers(name, &out);
  std::vector<std::string> hosts;
  for (const Server* s : out) hosts.push_back(s->host + ":" + brine::Load(s->port)->Repr());
  return hosts;
}

TEST(Mirror, RewritingTheSameEntryKeepsTheVersion) {
  Mirror m("/rpyc", "reg-a", "lab");
  const auto kv = Written("CALC", "10.0.0.1", 18812, {"CALC"}, "far", "reg-b");
  ASSERT_TRUE(m.Put(kv.first, kv.second));
  const uint64_t v = m.version();
  ASSERT_TRUE(m.Put(kv.first, kv.second));  // rewritten under a newer lease: nothing changed
  EXPECT_EQ(m.version(), v);
  const auto moved = Written("CALC", "10.0.0.1", 18812, {"CALC"}, "lab", "reg-b");
  ASSERT_TRUE(m.Put(moved.first, moved.second));  // now this site's
  EXPECT_GT(m.version(), v);
  EXPECT_EQ(Hosts(m, "CALC"), (std::vector<std::string>{"10.0.0.1:18812"}));
}

TEST(Mirror, ThisSiteFirstOwnEntriesSkippedRepeatsOnce) {
  Mirror m("/rpyc", "reg-a", "lab");
  const auto put = [&m](const std::pair<std::string, std::string>& kv) {
    return m.Put(kv.first, kv.second);
  };
  EXPECT_EQ(put(Written("CALC", "10.0.0.1", 18812, {"CALC"}, "far", "reg-b")), true);
  EXPECT_EQ(put(Written("CALC", "10.0.0.2", 18812, {"CALC", "X"}, "lab", "reg-c")), true);
  EXPECT_EQ(put(Written("X", "10.0.0.2", 18812, {"CALC", "X"}, "lab", "reg-c")), true);
  // The same server through a third registry: listed once.
  EXPECT_EQ(put(Written("CALC", "10.0.0.2", 18812, {"CALC"}, "lab", "reg-d")), true);
  // Our own keys are in the local table already.
  EXPECT_EQ(put(Written("CALC", "10.0.0.9", 1, {"CALC"}, "lab", "reg-a")), false);
  // "CALCULATOR" sorts right after "CALC/..." keys: not mixed in.
  EXPECT_EQ(put(Written("CALCULATOR", "10.0.0.3", 1, {"CALCULATOR"}, "lab", "reg-b")), true);
  EXPECT_EQ(m.entries(), 5u);
  EXPECT_EQ(Hosts(m, "CALC"), (std::vector<std::string>{"10.0.0.2:18812", "10.0.0.1:18812"}));
  EXPECT_TRUE(m.Has("X"));
  EXPECT_FALSE(m.Has("CAL"));
  EXPECT_EQ(m.Names(std::nullopt), (std::vector<std::string>{"CALC", "CALCULATOR", "X"}));
  EXPECT_EQ(m.Names("10.0.0.1"), (std::vector<std::string>{"CALC"}));
  // A DELETE event names the key only.
  EXPECT_TRUE(m.Delete(Written("CALC", "10.0.0.1", 18812, {"CALC"}, "far", "reg-b").first));
  EXPECT_FALSE(m.Delete("/rpyc/svc/NOPE/1.2.3.4:1/reg-b"));
  EXPECT_EQ(Hosts(m, "CALC"), (std::vector<std::string>{"10.0.0.2:18812"}));
  // A name stays while one of its keys does; a rewritten key counts once.
  EXPECT_EQ(put(Written("X", "10.0.0.2", 18812, {"CALC", "X"}, "far", "reg-c")), true);
  EXPECT_EQ(Hosts(m, "X"), (std::vector<std::string>{"10.0.0.2:18812"}));
  EXPECT_TRUE(m.Delete(Written("X", "10.0.0.2", 18812, {"X"}, "", "reg-c").first));
  EXPECT_FALSE(m.Has("X"));
  EXPECT_TRUE(m.Delete(Written("CALC", "10.0.0.2", 18812, {"CALC"}, "", "reg-c").first));
  EXPECT_TRUE(m.Has("CALC"));  // reg-d's key
  m.Clear();
  EXPECT_FALSE(m.Has("CALC"));
}

TEST(Mirror, MalformedEntriesAreErrorsNamingTheKey) {
  Mirror m("/rpyc", "reg-a", "");
  auto r = m.Put("/rpyc/svc/CALC/10.0.0.1:1/reg-b", "{not json");
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find("/rpyc/svc/CALC/10.0.0.1:1/reg-b"), std::string::npos);
  // The value disagrees with its key.
  auto kv = Written("CALC", "10.0.0.1", 1, {"CALC"}, "", "reg-b");
  EXPECT_FALSE(m.Put("/rpyc/svc/CALC/10.0.0.2:1/reg-b", kv.second));
  EXPECT_EQ(m.entries(), 0u);
}

TEST(Encode, MirroredServersFollowTheLocalOnesWhileTheyFit) {
  const std::string port = brine::Dump(brine::Value(18812));
  std::vector<Server> local;
  std::vector<Server> others;
  for (int i = 0; i < 3; ++i) local.push_back(Server{"10.0.0." + std::to_string(i), port});
  for (int i = 0; i < 200; ++i) others.push_back(Server{"10.1.0." + std::to_string(i), port});
  std::vector<const Server*> refs;
  for (const auto& s : local) refs.push_back(&s);
  for (const auto& s : others) refs.push_back(&s);
  size_t dropped = 0;
  std::string reply;
  EncodeServers(refs, 1500, &dropped, &reply, local.size());
  EXPECT_LE(reply.size(), 1500u);
  auto v = brine::Load(reply);
  ASSERT_TRUE(v) << v.error().message();
  const auto& items = v->as<brine::Tuple>().items;
  ASSERT_EQ(items.size(), refs.size() - dropped);
  EXPECT_GT(dropped, 0u);
  // Every local server, then the first mirrored ones (in the mirror's order of preference).
  EXPECT_EQ(items[0].as<brine::Tuple>().items[0], brine::Value(brine::Str{"10.0.0.0"}));
  EXPECT_EQ(items[3].as<brine::Tuple>().items[0], brine::Value(brine::Str{"10.1.0.0"}));
  EXPECT_EQ(items.back().as<brine::Tuple>().items[0],
            brine::Value(brine::Str{"10.1.0." + std::to_string(items.size() - 4)}));
  // Local servers alone too many: the newest local ones, nothing mirrored.
  std::vector<Server> many;
  for (int i = 0; i < 200; ++i) many.push_back(Server{"10.2.0." + std::to_string(i), port});
  std::vector<const Server*> big;
  for (const auto& s : many) big.push_back(&s);
  const size_t n_local = big.size();
  big.push_back(&others[0]);
  EncodeServers(big, 1500, &dropped, &reply, n_local);
  v = brine::Load(reply);
  ASSERT_TRUE(v);
  const auto& kept = v->as<brine::Tuple>().items;
  EXPECT_EQ(kept.back().as<brine::Tuple>().items[0], brine::Value(brine::Str{"10.2.0.199"}));
  EXPECT_EQ(kept.size(), big.size() - dropped);
}

}  // namespace
}  // namespace registryd
