#include "libcore/etcd/entry.h"

#include <gtest/gtest.h>

namespace core::etcd {
namespace {

Entry Sample() {
  Entry e;
  e.name = "CALC";
  e.host = "10.0.0.5";
  e.port = 18812;
  e.aliases = {"CALCULATOR", "CALC"};
  e.site = "lab";
  e.registry_id = "reg-a";
  return e;
}

TEST(EtcdEntry, KeyLayoutAndRoundTrip) {
  auto e = Sample();
  auto key = EntryKey("/rpyc", e);
  ASSERT_TRUE(key) << key.error().ToString();
  EXPECT_EQ(*key, "/rpyc/svc/CALC/10.0.0.5:18812/reg-a");
  EXPECT_EQ(key->rfind(NamePrefix("/rpyc", "CALC"), 0), 0u);
  auto back = DecodeEntry("/rpyc", *key, EntryValue(e));
  ASSERT_TRUE(back) << back.error().ToString();
  EXPECT_EQ(back->name, "CALC");
  EXPECT_EQ(back->host, e.host);
  EXPECT_EQ(back->port, e.port);
  EXPECT_EQ(back->aliases, e.aliases);
  EXPECT_EQ(back->site, "lab");
  EXPECT_EQ(back->registry_id, "reg-a");
}

TEST(EtcdEntry, Ipv6HostKeepsItsColons) {
  auto e = Sample();
  e.host = "fd00::5";
  auto key = EntryKey("/p", e);
  ASSERT_TRUE(key);
  auto back = DecodeEntry("/p", *key, EntryValue(e));
  ASSERT_TRUE(back) << back.error().ToString();
  EXPECT_EQ(back->host, "fd00::5");
}

TEST(EtcdEntry, KeyRefusesComponentsThatBreakTheLayout) {
  for (auto mutate : {+[](Entry& e) { e.name = "A/B"; }, +[](Entry& e) { e.host = ""; },
                      +[](Entry& e) { e.port = 0; }, +[](Entry& e) { e.registry_id = "x/y"; }}) {
    auto e = Sample();
    mutate(e);
    auto key = EntryKey("/p", e);
    ASSERT_FALSE(key);
    EXPECT_EQ(key.error().code(), Error::Code::kUsage);
  }
}

TEST(EtcdEntry, MalformedRecordsNameTheirKey) {
  const std::string key = "/p/svc/CALC/10.0.0.5:18812/reg-a";
  const std::string good = EntryValue(Sample());
  struct Case {
    std::string key, value;
  };
  const Case cases[] = {
      {key, "garbage"},
      {key, "[]"},
      {key, R"({"host":"10.0.0.5","port":18812,"aliases":["CALC"]})"},
      {key, R"({"host":"10.0.0.5","port":"18812","aliases":["CALC"],"registry-id":"reg-a"})"},
      {key, R"({"host":"10.0.0.5","port":-1,"aliases":["CALC"],"registry-id":"reg-a"})"},
      {key, R"({"host":"10.0.0.6","port":18812,"aliases":["CALC"],"registry-id":"reg-a"})"},
      {key, R"({"host":"10.0.0.5","port":18813,"aliases":["CALC"],"registry-id":"reg-a"})"},
      {key, R"({"host":"10.0.0.5","port":18812,"aliases":["OTHER"],"registry-id":"reg-a"})"},
      {key, R"({"host":"10.0.0.5","port":18812,"aliases":[1],"registry-id":"reg-a"})"},
      {key, R"({"host":"10.0.0.5","port":18812,"aliases":["CALC"],"registry-id":"reg-b"})"},
      {key, R"({"host":"10.0.0.5","port":18812,"aliases":["CALC"],"registry-id":"reg-a",)"
            R"("site":7})"},
      {"/p/svc/CALC/10.0.0.5:18812", good},
      {"/p/svc/CALC/10.0.0.5:18812/reg-a/x", good},
      {"/p/svc/CALC/10.0.0.5/reg-a", good},
      {"/p/svc/CALC/10.0.0.5:0/reg-a", good},
      {"/p/svc/CALC/10.0.0.5:99999/reg-a", good},
      {"/p/svc/CALC/10.0.0.5:18812x/reg-a", good},
      {"/q/svc/CALC/10.0.0.5:18812/reg-a", good},
  };
  for (const auto& c : cases) {
    auto r = DecodeEntry("/p", c.key, c.value);
    ASSERT_FALSE(r) << c.key << " " << c.value;
    EXPECT_EQ(r.error().code(), Error::Code::kProtocol);
    EXPECT_NE(r.error().message().find(c.key), std::string::npos) << r.error().ToString();
  }
  EXPECT_TRUE(DecodeEntry("/p", key, good));
}

}  // namespace
}  // namespace core::etcd
