#include "daemons/registryd/request.h"

#include <cstdio>
#include <fstream>
#include <sstream>

#include <gtest/gtest.h>

#include "libcore/brine/brine.h"
#include "libcore/testing/temp_path.h"

namespace registryd {
namespace {

namespace brine = core::brine;
using brine::MakeStr;
using brine::MakeTuple;
using brine::Value;

std::string Hex(std::string_view hex) {
  std::string out;
  std::istringstream in{std::string(hex)};
  std::string byte;
  while (in >> byte) out.push_back(static_cast<char>(std::stoi(byte, nullptr, 16)));
  return out;
}

std::string Req(const std::string& cmd, Value args) {
  return brine::Dump(MakeTuple({MakeStr("RPYC"), MakeStr(cmd), std::move(args)}));
}

// docs/protocol.md §10 golden requests.
const char* kQuerySlave = "12 08 0d 52 50 59 43 08 0e 05 51 55 45 52 59 10 08 0e 05 53 4c 41 56 45";
const char* kRegisterSlave =
    "12 08 0d 52 50 59 43 08 0e 08 52 45 47 49 53 54 45 52 11 10 08 0e 05 53 4c 41 56 45 16 05 31 "
    "38 38 31 32";
const char* kUnregister =
    "12 08 0d 52 50 59 43 08 0e 0a 55 4e 52 45 47 49 53 54 45 52 10 16 05 31 38 38 31 32";
const char* kListNone = "12 08 0d 52 50 59 43 08 0d 4c 49 53 54 10 10 00";

TEST(ParseRequest, GoldenRequests) {
  auto q = ParseRequest(Hex(kQuerySlave));
  ASSERT_TRUE(q) << q.error().message();
  EXPECT_EQ(q->command, Command::kQuery);
  EXPECT_EQ(q->names, std::vector<std::string>{"SLAVE"});
  auto r = ParseRequest(Hex(kRegisterSlave));
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_EQ(r->command, Command::kRegister);
  EXPECT_EQ(r->port, Hex("16 05 31 38 38 31 32"));
  EXPECT_EQ(r->port_text, "18812");
  auto u = ParseRequest(Hex(kUnregister));
  ASSERT_TRUE(u);
  EXPECT_EQ(u->command, Command::kUnregister);
  auto l = ParseRequest(Hex(kListNone));
  ASSERT_TRUE(l);
  EXPECT_EQ(l->command, Command::kList);
}

TEST(ParseRequest, CommandIsCaseInsensitiveAndStrNamesSpread) {
  auto q = ParseRequest(Req("qUeRy", MakeTuple({MakeStr("x")})));
  ASSERT_TRUE(q);
  EXPECT_EQ(q->command, Command::kQuery);
  // REGISTER iterates names: a bare str registers its characters.
  auto r = ParseRequest(Req("register", MakeTuple({MakeStr("ab"), Value(5)})));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->names, (std::vector<std::string>{"a", "b"}));
}

struct BadCase {
  std::string bytes;
  const char* message_part;
};

TEST(ParseRequest, EveryRejection) {
  const BadCase cases[] = {
      {"", "undecodable"},
      {"\xff\x01", "undecodable"},
      {Hex(kQuerySlave).substr(0, 10), "undecodable"},
      {brine::Dump(MakeStr("RPYC")), "not a 3-tuple"},
      {brine::Dump(MakeTuple({MakeStr("RPYC"), MakeStr("QUERY")})), "not a 3-tuple"},
      {brine::Dump(MakeTuple({brine::MakeBytes("RPYC"), MakeStr("QUERY"), MakeTuple({})})),
       "invalid magic: b'RPYC'"},
      {brine::Dump(MakeTuple({MakeStr("RPYX"), MakeStr("QUERY"), MakeTuple({})})), "invalid magic"},
      {Req("FETCH", MakeTuple({})), "unknown command: 'FETCH'"},
      {brine::Dump(MakeTuple({MakeStr("RPYC"), Value(1), MakeTuple({})})), "command is not a str"},
      {Req("QUERY", MakeTuple({})), "query takes 1 argument(s), got 0"},
      {Req("QUERY", MakeTuple({MakeStr("a"), MakeStr("b")})), "takes 1"},
      {Req("QUERY", Value(5)), "arguments are not a tuple"},
      {Req("QUERY", MakeTuple({Value(5)})), "query name is not a str"},
      {Req("REGISTER", MakeTuple({MakeTuple({MakeStr("A")})})), "takes 2"},
      {Req("REGISTER", MakeTuple({MakeTuple({Value(1)}), Value(1)})), "name is not a str"},
      {Req("REGISTER", MakeTuple({Value(1), Value(1)})), "names are not a tuple"},
      {Req("REGISTER", MakeTuple({MakeTuple({MakeStr("A")}), Value(1.5)})), "port must be"},
      {Req("REGISTER", MakeTuple({MakeTuple({MakeStr(std::string(256, 'x'))}), Value(1)})),
       "longer than 255"},
      {Req("UNREGISTER", MakeTuple({})), "takes 1 or 2"},
      {Req("REGISTER", MakeTuple({MakeTuple({MakeStr("A")}), Value(1), MakeStr("a"), Value(1)})),
       "takes 2 or 3"},
      {Req("REGISTER", MakeTuple({MakeTuple({MakeStr("A")}), Value(1), Value(7)})),
       "advertised host is not"},
      {Req("REGISTER", MakeTuple({MakeTuple({MakeStr("A")}), Value(1), MakeStr("a b")})),
       "advertised host is not"},
      {Req("UNREGISTER", MakeTuple({Value(1), MakeStr("")})), "advertised host is not"},
      {Req("LIST", MakeTuple({})), "takes 1"},
      {Req("QUERY", MakeTuple({MakeStr("x")})) + std::string(1, '\0'), "trailing"},
  };
  for (const auto& c : cases) {
    auto r = ParseRequest(c.bytes);
    ASSERT_FALSE(r) << c.message_part;
    EXPECT_NE(r.error().message().find(c.message_part), std::string::npos) << r.error().message();
  }
}

TEST(FastQueryName, OnlyCanonicalQueries) {
  EXPECT_EQ(FastQueryName(Hex(kQuerySlave)), "SLAVE");
  EXPECT_EQ(FastQueryName(Req("qUeRy", MakeTuple({MakeStr("")}))), "");
  EXPECT_EQ(FastQueryName(Req("QUERY", MakeTuple({MakeStr(std::string(255, 'x'))}))),
            std::string(255, 'x'));
  // Everything else goes the general way (and gets the same answer or the same warning there).
  EXPECT_FALSE(FastQueryName(Req("QUERY", MakeTuple({MakeStr(std::string(256, 'x'))}))));
  EXPECT_FALSE(FastQueryName(Hex(kQuerySlave) + "x"));
  EXPECT_FALSE(FastQueryName(Hex(kQuerySlave).substr(0, 22)));
  EXPECT_FALSE(FastQueryName(Req("QUERX", MakeTuple({MakeStr("a")}))));
  EXPECT_FALSE(FastQueryName(Req("QUERY", MakeTuple({brine::MakeBytes("a")}))));
  EXPECT_FALSE(FastQueryName(Req("QUERY", MakeTuple({MakeStr("a"), MakeStr("b")}))));
  std::string bad_utf8 = Req("QUERY", MakeTuple({MakeStr("ab")}));
  bad_utf8.back() = '\xff';
  EXPECT_FALSE(FastQueryName(bad_utf8));
  EXPECT_FALSE(ParseRequest(bad_utf8));
}

TEST(Encode, SameBytesAsTheBrineEncoder) {
  for (size_t n : {0, 1, 4, 5, 255, 256, 1000}) {
    const std::string name(n, 'n');
    size_t dropped = 0;
    EXPECT_EQ(EncodeNames({name}, 100000, &dropped), brine::Dump(MakeTuple({MakeStr(name)}))) << n;
    const Server server{name, brine::Dump(Value(static_cast<int64_t>(n)))};
    std::string reply;
    EncodeServers({&server}, 100000, &dropped, &reply);
    EXPECT_EQ(reply,
              brine::Dump(MakeTuple({MakeTuple({MakeStr(name), Value(static_cast<int64_t>(n))})})))
        << n;
  }
}

TEST(Encode, GoldenReplyAndTruncation) {
  size_t dropped = 0;
  const std::string port = brine::Dump(Value(18812));
  const Server one{"127.0.0.1", port};
  std::string reply;
  EncodeServers({&one}, 1500, &dropped, &reply);
  EXPECT_EQ(reply, Hex("10 11 08 0e 09 31 32 37 2e 30 2e 30 2e 31 16 05 31 38 38 31 32"));
  EncodeServers({}, 1500, &dropped, &reply);
  EXPECT_EQ(reply, Hex("02"));
  std::vector<Server> many;
  for (int i = 0; i < 200; ++i) many.push_back(Server{"10.0.0." + std::to_string(i), port});
  std::vector<const Server*> refs;
  for (const auto& m : many) refs.push_back(&m);
  EncodeServers(refs, 1500, &dropped, &reply);
  EXPECT_LE(reply.size(), 1500u);
  EXPECT_GT(dropped, 0u);
  auto v = brine::Load(reply);
  ASSERT_TRUE(v) << v.error().message();  // still a valid tuple
  const auto& items = v->as<brine::Tuple>().items;
  EXPECT_EQ(items.size(), 200 - dropped);
  // The newest servers are kept, and still sent oldest first.
  EXPECT_EQ(items.back().as<brine::Tuple>().items[0], MakeStr("10.0.0.199"));
  std::vector<std::string> names(2000, "SERVICE");
  const std::string list = EncodeNames(names, 15000, &dropped);
  EXPECT_LE(list.size(), 15000u);
  ASSERT_TRUE(brine::Load(list));
  EXPECT_EQ(brine::Load(list)->as<brine::Tuple>().items.size(), 2000 - dropped);
}

class HandlerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = core::testing::TempPath("handler_test.log");
    std::remove(path_.c_str());
    core::log::Options o;
    o.file = path_;
    o.target = core::log::Target::kStderr;
    logging_ = std::move(*core::log::Logging::Create(o));
  }
  void TearDown() override { std::remove(path_.c_str()); }
  std::string LogText() {
    std::ifstream in(path_);
    std::ostringstream s;
    s << in.rdbuf();
    return s.str();
  }
  Handler Make(bool listing) {
    return Handler(registry_, sources_, listing, ReplyLimits{}, logging_->Get("REGSRV/UDP/18811"));
  }
  Registry registry_{100, 240};
  Sources sources_{SourceLimits{}};
  std::string path_;
  std::unique_ptr<core::log::Logging> logging_;
};

TEST_F(HandlerTest, RegisterQueryUnregisterLikeTheReference) {
  Handler h = Make(false);
  EXPECT_EQ(*h.Handle(Hex(kRegisterSlave),
                      core::transport::PeerAddress("127.0.0.1", "127.0.0.1:4000"), 0),
            Hex("08 0b 4f 4b"));
  EXPECT_EQ(
      *h.Handle(Hex(kQuerySlave), core::transport::PeerAddress("127.0.0.1", "127.0.0.1:4001"), 1),
      Hex("10 11 08 0e 09 31 32 37 2e 30 2e 30 2e 31 16 05 31 38 38 31 32"));
  // Names are upper-cased on both sides.
  const std::string upper(*h.Handle(Hex(kQuerySlave), core::transport::PeerAddress("h", "p"), 1));
  EXPECT_EQ(*h.Handle(Req("query", MakeTuple({MakeStr("slave")})),
                      core::transport::PeerAddress("h", "p"), 1),
            upper);
  // UNREGISTER from another host removes nothing.
  EXPECT_EQ(
      *h.Handle(Hex(kUnregister), core::transport::PeerAddress("127.0.0.2", "127.0.0.2:1"), 2),
      Hex("08 0b 4f 4b"));
  EXPECT_EQ(registry_.entries(), 1u);
  EXPECT_EQ(
      *h.Handle(Hex(kUnregister), core::transport::PeerAddress("127.0.0.1", "127.0.0.1:1"), 2),
      Hex("08 0b 4f 4b"));
  EXPECT_EQ(*h.Handle(Hex(kQuerySlave), core::transport::PeerAddress("h", "p"), 3), Hex("02"));
  EXPECT_NE(LogText().find("DEBUG:REGSRV/UDP/18811:registering 127.0.0.1:18812 as SLAVE"),
            std::string::npos)
      << LogText();
  EXPECT_NE(LogText().find("replying with [('127.0.0.1', 18812)]"), std::string::npos);
}

TEST(CanonicalHost, AddressesAndNamesOnly) {
  EXPECT_EQ(CanonicalHost("203.0.113.7"), "203.0.113.7");
  EXPECT_EQ(CanonicalHost("2001:DB8:0:0::1"), "2001:db8::1");
  EXPECT_EQ(CanonicalHost("::ffff:10.1.2.3"), "10.1.2.3");
  EXPECT_EQ(CanonicalHost("Gateway.Example.ORG"), "gateway.example.org");
  EXPECT_EQ(CanonicalHost("a-1.b"), "a-1.b");
  EXPECT_EQ(CanonicalHost("localhost"), "localhost");
  for (const char* bad : {"", "a..b", ".a", "a.", "-a.b", "a-.b", "a b", "a_b", "10.1", "1.2.3.4.5",
                          "x/y", "[::1]", "h\n"}) {
    EXPECT_FALSE(CanonicalHost(bad)) << bad;
  }
  EXPECT_FALSE(CanonicalHost(std::string(64, 'a') + ".b"));
  EXPECT_TRUE(CanonicalHost(std::string(63, 'a') + ".b"));
  EXPECT_FALSE(CanonicalHost(std::string(254, 'a')));
}

// The extension (docs/differences.md): REGISTER (names, port, host) records `host` instead of
// the packet's source; UNREGISTER (port, host) removes it; the plain forms are unchanged.
TEST_F(HandlerTest, AdvertisedHostIsRecordedInsteadOfTheSource) {
  Handler h = Make(false);
  const core::transport::PeerAddress lo("127.0.0.1", "127.0.0.1:4000");
  EXPECT_EQ(*h.Handle(Req("REGISTER", MakeTuple({MakeTuple({MakeStr("SLAVE")}), Value(18812),
                                                 MakeStr("203.0.113.7")})),
                      lo, 0),
            Hex("08 0b 4f 4b"));
  auto reply = brine::Load(*h.Handle(Hex(kQuerySlave), lo, 1));
  ASSERT_TRUE(reply);
  EXPECT_EQ(reply->Repr(), "(('203.0.113.7', 18812),)");
  // A plain UNREGISTER from the source removes (source, port): not this entry.
  h.Handle(Hex(kUnregister), lo, 2);
  EXPECT_EQ(registry_.entries(), 1u);
  EXPECT_EQ(*h.Handle(Req("UNREGISTER", MakeTuple({Value(18812), MakeStr("203.0.113.7")})), lo, 3),
            Hex("08 0b 4f 4b"));
  EXPECT_EQ(registry_.entries(), 0u);
}

TEST(RegistryHost, UnmapsV4MappedOnly) {
  EXPECT_EQ(RegistryHost("::ffff:10.1.2.3"), "10.1.2.3");
  EXPECT_EQ(RegistryHost("::ffff:127.0.0.1"), "127.0.0.1");
  EXPECT_EQ(RegistryHost("10.1.2.3"), "10.1.2.3");
  EXPECT_EQ(RegistryHost("::1"), "::1");
  EXPECT_EQ(RegistryHost("::ffff:a0b:c0d"), "::ffff:a0b:c0d");  // not dotted: not inet_ntop's
  EXPECT_EQ(RegistryHost("::ffff:"), "::ffff:");
  EXPECT_EQ(RegistryHost("::ffff:1.2.3"), "::ffff:1.2.3");
  EXPECT_EQ(RegistryHost("fe80::ffff:1.2.3.4"), "fe80::ffff:1.2.3.4");
}

// A server registering over a dual-stack socket's IPv4 side is recorded, answered and
// unregistered under its IPv4 address.
TEST_F(HandlerTest, V4MappedPeerIsRecordedAsIpv4) {
  Handler h = Make(false);
  const core::transport::PeerAddress mapped("::ffff:127.0.0.1", "[::ffff:127.0.0.1]:4000");
  EXPECT_EQ(*h.Handle(Hex(kRegisterSlave), mapped, 0), Hex("08 0b 4f 4b"));
  EXPECT_EQ(*h.Handle(Hex(kQuerySlave), core::transport::PeerAddress("h", "p"), 1),
            Hex("10 11 08 0e 09 31 32 37 2e 30 2e 30 2e 31 16 05 31 38 38 31 32"));
  // The same server over plain IPv4 refreshes the one entry.
  h.Handle(Hex(kRegisterSlave), core::transport::PeerAddress("127.0.0.1", "127.0.0.1:4000"), 2);
  EXPECT_EQ(registry_.entries(), 1u);
  EXPECT_EQ(*h.Handle(Hex(kUnregister), mapped, 3), Hex("08 0b 4f 4b"));
  EXPECT_EQ(registry_.entries(), 0u);
}

// Without debug logging QUERY goes through the registry's reply cache: every change must show.
TEST(HandlerCache, RepliesFollowEveryChange) {
  core::log::Options o;
  o.quiet = true;
  o.target = core::log::Target::kStderr;
  auto logging = core::log::Logging::Create(o);
  ASSERT_TRUE(logging);
  Registry registry(100, 10);
  Sources sources{SourceLimits{}};
  Handler h(registry, sources, false, ReplyLimits{}, (*logging)->Get("T"));
  auto ask = [&](const std::string& data, const char* host, double now) {
    auto r = h.Handle(data, core::transport::PeerAddress(host, "p"), now);
    return r ? brine::Load(*r) : core::Result<Value>(Value());
  };
  const std::string reg = Req("REGISTER", MakeTuple({MakeTuple({MakeStr("S")}), Value(1)}));
  const std::string query = Req("QUERY", MakeTuple({MakeStr("s")}));
  auto pair = [](const char* host) { return MakeTuple({MakeStr(host), Value(1)}); };
  EXPECT_EQ(*ask(query, "x", 0), MakeTuple({}));
  ask(reg, "10.0.0.1", 0);
  EXPECT_EQ(*ask(query, "x", 1), MakeTuple({pair("10.0.0.1")}));
  ask(reg, "10.0.0.2", 2);
  EXPECT_EQ(*ask(query, "x", 3), MakeTuple({pair("10.0.0.1"), pair("10.0.0.2")}));
  ask(reg, "10.0.0.1", 4);  // refresh: now the newest
  EXPECT_EQ(*ask(query, "x", 5), MakeTuple({pair("10.0.0.2"), pair("10.0.0.1")}));
  EXPECT_EQ(*ask(query, "x", 13), MakeTuple({pair("10.0.0.1")}));  // 10.0.0.2 went stale
  ask(Req("UNREGISTER", MakeTuple({Value(1)})), "10.0.0.1", 13);
  EXPECT_EQ(*ask(query, "x", 13), MakeTuple({}));
}

TEST_F(HandlerTest, ListOffOnAndFiltered) {
  Handler off = Make(false);
  EXPECT_EQ(*off.Handle(Hex(kListNone), core::transport::PeerAddress("h", "p"), 0), Hex("00"));
  // Disabled listing answers None before looking at the argument, as the reference does.
  EXPECT_EQ(
      *off.Handle(Req("LIST", MakeTuple({Value(5)})), core::transport::PeerAddress("h", "p"), 0),
      Hex("00"));
  Handler on = Make(true);
  on.Handle(Req("REGISTER", MakeTuple({MakeTuple({MakeStr("b"), MakeStr("a")}), Value(1)})),
            core::transport::PeerAddress("10.0.0.1", "p"), 0);
  on.Handle(Req("REGISTER", MakeTuple({MakeTuple({MakeStr("c")}), Value(1)})),
            core::transport::PeerAddress("10.0.0.2", "p"), 0);
  auto all = brine::Load(*on.Handle(Hex(kListNone), core::transport::PeerAddress("h", "p"), 0));
  EXPECT_EQ(*all, MakeTuple({MakeStr("B"), MakeStr("A"), MakeStr("C")}));
  auto empty_filter = on.Handle(Req("LIST", MakeTuple({MakeTuple({MakeStr("")})})),
                                core::transport::PeerAddress("h", "p"), 0);
  EXPECT_EQ(*brine::Load(*empty_filter), *all);
  auto filtered = on.Handle(Req("LIST", MakeTuple({MakeTuple({MakeStr("10.0.0.2")})})),
                            core::transport::PeerAddress("h", "p"), 0);
  EXPECT_EQ(*brine::Load(*filtered), MakeTuple({MakeStr("C")}));
  EXPECT_FALSE(
      on.Handle(Req("LIST", MakeTuple({Value(5)})), core::transport::PeerAddress("h", "p"), 0));
}

TEST_F(HandlerTest, BadInputNoReplyOneWarningNamingThePeer) {
  Handler h = Make(false);
  EXPECT_FALSE(h.Handle("garbage", core::transport::PeerAddress("10.9.8.7", "10.9.8.7:555"), 0));
  EXPECT_EQ(registry_.entries(), 0u);
  const std::string text = LogText();
  EXPECT_NE(text.find("WARNING:REGSRV/UDP/18811:bad request from 10.9.8.7:555: undecodable"),
            std::string::npos)
      << text;
}

TEST_F(HandlerTest, FullRegistryRefusesWithoutReply) {
  Registry small(1, 240);
  Handler h(small, sources_, false, ReplyLimits{}, logging_->Get("T"));
  EXPECT_TRUE(h.Handle(Req("REGISTER", MakeTuple({MakeTuple({MakeStr("a")}), Value(1)})),
                       core::transport::PeerAddress("h", "p"), 0));
  EXPECT_FALSE(h.Handle(Req("REGISTER", MakeTuple({MakeTuple({MakeStr("b")}), Value(1)})),
                        core::transport::PeerAddress("h", "p"), 0));
  EXPECT_NE(LogText().find("registry full (1 entry)"), std::string::npos) << LogText();
}

TEST_F(HandlerTest, PeerStringsAreEscapedInLogLines) {
  Handler h = Make(false);
  const core::transport::PeerAddress peer("10.0.0.5", "10.0.0.5:77");
  EXPECT_TRUE(h.Handle(Req("REGISTER", MakeTuple({MakeTuple({MakeStr("X\r\nWARNING:forged")}),
                                                  MakeStr("/tmp/a\nb")})),
                       peer, 0));
  EXPECT_TRUE(h.Handle(Req("QUERY", MakeTuple({MakeStr("Y\nDEBUG:forged")})), peer, 0));
  const std::string text = LogText();
  EXPECT_EQ(text.find("\nWARNING:forged"), std::string::npos) << text;
  EXPECT_EQ(text.find("\nDEBUG:forged"), std::string::npos) << text;
  EXPECT_NE(text.find("registering 10.0.0.5:/tmp/a\\nb as X\\r\\nWARNING:forged"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("querying for 'Y\\nDEBUG:FORGED'"), std::string::npos) << text;
}

TEST_F(HandlerTest, OneSourceCannotFillTheRegistryNorRegisterFaster) {
  Registry registry(100, 240, 3);
  SourceLimits limits;
  limits.registers_per_second = 2;  // a burst of 10
  Sources sources(limits);
  Handler h(registry, sources, false, ReplyLimits{}, logging_->Get("T"));
  const core::transport::PeerAddress a("10.0.0.1", "10.0.0.1:5"), b("10.0.0.2", "10.0.0.2:5");
  auto reg = [&](const char* name, const core::transport::PeerAddress& p, double now) {
    return h.Handle(Req("REGISTER", MakeTuple({MakeTuple({MakeStr(name)}), Value(1)})), p, now)
        .has_value();
  };
  EXPECT_TRUE(reg("a", a, 0));
  EXPECT_TRUE(reg("b", a, 0));
  EXPECT_TRUE(reg("c", a, 0));
  EXPECT_FALSE(reg("d", a, 0));  // a's share is full
  EXPECT_TRUE(reg("d", b, 0));   // b is not affected
  EXPECT_TRUE(reg("a", a, 0));   // refreshing works
  EXPECT_NE(LogText().find("10.0.0.1 has 3 entries (max-entries-per-source): refused 1 new entry"),
            std::string::npos)
      << LogText();
  int answered = 0;
  for (int i = 0; i < 20; ++i) answered += reg("a", a, 0) ? 1 : 0;
  EXPECT_EQ(answered, 5);  // the burst of 10 REGISTERs, 5 of them used above
  EXPECT_TRUE(reg("e", b, 0));
  EXPECT_TRUE(reg("a", a, 1.0));  // 2 per second again
  EXPECT_NE(LogText().find("REGISTER rate of 10.0.0.1 over 2/s: 1 REGISTER(s) refused"),
            std::string::npos)
      << LogText();
}

TEST_F(HandlerTest, UdpRepliesStayWithinTheSourceBudget) {
  SourceLimits limits;
  limits.reply_bytes_per_second = 1000;  // the burst: one largest reply, 15,000 bytes
  Sources sources(limits);
  Handler h(registry_, sources, true, ReplyLimits{kMaxReplyBytes, kMaxUdpListReplyBytes, true},
            logging_->Get("T"));
  const core::transport::PeerAddress victim("10.0.0.7", "10.0.0.7:53");
  const std::string query = Req("QUERY", MakeTuple({MakeStr("NOBODY")}));
  size_t bytes = 0;
  for (int i = 0; i < 100000; ++i) {
    if (auto r = h.Handle(query, victim, 0)) bytes += r->size();
  }
  EXPECT_LE(bytes, 15000u);
  EXPECT_GE(bytes, 14000u);
  EXPECT_TRUE(h.Handle(query, core::transport::PeerAddress("10.0.0.8", "10.0.0.8:1"), 0));
  EXPECT_TRUE(h.Handle(query, victim, 1.0));  // 1000 bytes/s later
  EXPECT_NE(LogText().find("reply budget of 10.0.0.7 (1000 bytes/s) exceeded"), std::string::npos)
      << LogText();
}

}  // namespace
}  // namespace registryd
