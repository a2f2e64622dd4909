#include "daemons/classicd/allow_list.h"

#include <cstring>
#include <string>

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

namespace classicd {
namespace {

sockaddr_storage Addr(const std::string& host) {
  sockaddr_storage ss{};
  auto* sin = reinterpret_cast<sockaddr_in*>(&ss);
  auto* sin6 = reinterpret_cast<sockaddr_in6*>(&ss);
  if (inet_pton(AF_INET, host.c_str(), &sin->sin_addr) == 1) {
    sin->sin_family = AF_INET;
  } else {
    EXPECT_EQ(inet_pton(AF_INET6, host.c_str(), &sin6->sin6_addr), 1) << host;
    sin6->sin6_family = AF_INET6;
  }
  return ss;
}

bool In(const std::string& block, const std::string& host) {
  auto c = Cidr::Parse(block);
  EXPECT_TRUE(c.has_value()) << block;
  return c && c->Contains(Addr(host));
}

std::string ParseError(const std::string& text) {
  auto c = Cidr::Parse(text);
  return c ? "" : c.error().message();
}

TEST(Cidr, ParsesBlocksAndAddresses) {
  auto c = Cidr::Parse("10.0.0.0/8");
  ASSERT_TRUE(c);
  EXPECT_EQ(c->family, AF_INET);
  EXPECT_EQ(c->prefix, 8);
  EXPECT_EQ(c->ToString(), "10.0.0.0/8");
  EXPECT_EQ(Cidr::Parse("127.0.0.1")->ToString(), "127.0.0.1/32");
  EXPECT_EQ(Cidr::Parse("::1")->ToString(), "::1/128");
  EXPECT_EQ(Cidr::Parse("fd00::/64")->ToString(), "fd00::/64");
  EXPECT_EQ(Cidr::Parse("0.0.0.0/0")->ToString(), "0.0.0.0/0");
  EXPECT_EQ(Cidr::Parse("::/0")->ToString(), "::/0");
  EXPECT_EQ(Cidr::Parse("192.168.1.128/25")->prefix, 25);
}

TEST(Cidr, RefusesWhatIsNotABlock) {
  EXPECT_NE(ParseError("10.0.0.0/33").find("0-32"), std::string::npos);
  EXPECT_NE(ParseError("::/129").find("0-128"), std::string::npos);
  EXPECT_NE(ParseError("10.0.0.0/").find("prefix length"), std::string::npos);
  EXPECT_NE(ParseError("10.0.0.0/-1").find("prefix length"), std::string::npos);
  EXPECT_NE(ParseError("10.0.0.0/8x").find("prefix length"), std::string::npos);
  EXPECT_NE(ParseError("localhost").find("not an IPv4 or IPv6"), std::string::npos);
  EXPECT_NE(ParseError("").find("not an IPv4 or IPv6"), std::string::npos);
  EXPECT_NE(ParseError("10.0.0/8").find("not an IPv4 or IPv6"), std::string::npos);
  EXPECT_NE(ParseError(" 10.0.0.0/8").find("not an IPv4 or IPv6"), std::string::npos);
  EXPECT_EQ(ParseError("10.0.0.1/8"), "'10.0.0.1/8' has host bits set: did you mean 10.0.0.0/8?");
  EXPECT_EQ(ParseError("fd00::1/64"), "'fd00::1/64' has host bits set: did you mean fd00::/64?");
  EXPECT_EQ(ParseError("192.168.1.129/25"),
            "'192.168.1.129/25' has host bits set: did you mean 192.168.1.128/25?");
}

TEST(Cidr, MatchesByPrefix) {
  EXPECT_TRUE(In("10.0.0.0/8", "10.255.1.2"));
  EXPECT_FALSE(In("10.0.0.0/8", "11.0.0.1"));
  EXPECT_TRUE(In("127.0.0.1/32", "127.0.0.1"));
  EXPECT_FALSE(In("127.0.0.1/32", "127.0.0.2"));
  EXPECT_TRUE(In("192.168.1.128/25", "192.168.1.200"));
  EXPECT_FALSE(In("192.168.1.128/25", "192.168.1.127"));
  EXPECT_TRUE(In("0.0.0.0/0", "203.0.113.9"));
  EXPECT_TRUE(In("::1/128", "::1"));
  EXPECT_FALSE(In("::1/128", "::2"));
  EXPECT_TRUE(In("fd00::/64", "fd00::abcd:1"));
  EXPECT_FALSE(In("fd00::/64", "fd00:0:0:1::1"));
  EXPECT_TRUE(In("fe80::/10", "febf::1"));
  EXPECT_FALSE(In("fe80::/10", "fec0::1"));
  // An IPv4 peer is also its IPv4-mapped IPv6 address (as a dual-stack listener sees it), so
  // ::/0 holds every peer; an IPv4 block never holds a plain IPv6 peer.
  EXPECT_TRUE(In("::/0", "127.0.0.1"));
  EXPECT_FALSE(In("0.0.0.0/0", "::1"));
  EXPECT_TRUE(In("127.0.0.0/8", "::ffff:127.0.0.1"));
  EXPECT_FALSE(In("10.0.0.0/8", "::ffff:127.0.0.1"));
  EXPECT_TRUE(In("::ffff:0:0/96", "127.0.0.1"));
  EXPECT_TRUE(In("::ffff:0:0/96", "::ffff:10.1.1.1"));
}

TEST(Cidr, NeverContainsOtherFamilies) {
  sockaddr_storage unix_addr{};
  unix_addr.ss_family = AF_UNIX;
  EXPECT_FALSE(Cidr::Parse("0.0.0.0/0")->Contains(unix_addr));
  EXPECT_FALSE(Cidr::Parse("::/0")->Contains(unix_addr));
}

TEST(AllowList, EmptyListsAllowEveryone) {
  AllowList list;
  EXPECT_FALSE(list.restricts_tcp());
  EXPECT_FALSE(list.restricts_unix());
  EXPECT_TRUE(list.AllowsAddress(Addr("203.0.113.9")));
  EXPECT_TRUE(list.AllowsUnix(PeerCred{}));
}

TEST(AllowList, AddressesInAnyBlock) {
  AllowList list(*AllowList::ParseBlocks({"10.0.0.0/8", "::1/128"}), {}, {});
  EXPECT_TRUE(list.restricts_tcp());
  EXPECT_FALSE(list.restricts_unix());
  EXPECT_TRUE(list.AllowsAddress(Addr("10.1.2.3")));
  EXPECT_TRUE(list.AllowsAddress(Addr("::1")));
  EXPECT_FALSE(list.AllowsAddress(Addr("127.0.0.1")));
  EXPECT_FALSE(list.AllowsAddress(Addr("::2")));
  auto bad = AllowList::ParseBlocks({"10.0.0.0/8", "10.0.0.0/99"});
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message().find("'10.0.0.0/99'"), std::string::npos);
}

TEST(AllowList, UnixPeersByUidOrGroup) {
  AllowList list({}, {1000, 0}, {50});
  EXPECT_TRUE(list.restricts_unix());
  PeerCred cred;
  cred.valid = true;
  cred.uid = 1000;
  cred.gid = 1000;
  EXPECT_TRUE(list.AllowsUnix(cred));
  cred.uid = 1001;
  EXPECT_FALSE(list.AllowsUnix(cred));
  cred.gid = 50;
  EXPECT_TRUE(list.AllowsUnix(cred));
  cred.gid = 1001;
  cred.groups = {20, 50};
  EXPECT_TRUE(list.AllowsUnix(cred));
  cred.groups = {20};
  EXPECT_FALSE(list.AllowsUnix(cred));
  cred.uid = 0;
  cred.valid = false;  // no SO_PEERCRED: refused when a list is set
  EXPECT_FALSE(list.AllowsUnix(cred));
}

TEST(AllowList, ParsesUsersAndGroupsByNameOrId) {
  EXPECT_EQ(*AllowList::ParseUsers({"root", "1234"}), (std::vector<uid_t>{0, 1234}));
  EXPECT_EQ(*AllowList::ParseGroups({"root", "4321"}), (std::vector<gid_t>{0, 4321}));
  auto user = AllowList::ParseUsers({"no-such-user-rpyc"});
  ASSERT_FALSE(user);
  EXPECT_EQ(user.error().message(), "unknown user 'no-such-user-rpyc'");
  auto group = AllowList::ParseGroups({"no-such-group-rpyc"});
  ASSERT_FALSE(group);
  EXPECT_EQ(group.error().message(), "unknown group 'no-such-group-rpyc'");
  EXPECT_FALSE(AllowList::ParseUsers({""}));
}

TEST(AllowList, ReadsPeerCredOfAUnixSocket) {
  int fds[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
  const PeerCred cred = ReadPeerCred(fds[0]);
  EXPECT_TRUE(cred.valid);
  EXPECT_EQ(cred.uid, getuid());
  EXPECT_EQ(cred.gid, getgid());
  EXPECT_EQ(cred.pid, getpid());
  AllowList mine({}, {getuid()}, {});
  EXPECT_TRUE(mine.AllowsUnix(cred));
  AllowList other({}, {getuid() + 1}, {});
  EXPECT_FALSE(other.AllowsUnix(cred));
  close(fds[0]);
  close(fds[1]);
  EXPECT_FALSE(ReadPeerCred(-1).valid);
}

}  // namespace
}  // namespace classicd
