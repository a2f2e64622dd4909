#include "libcore/etcd/codec.h"

#include <gtest/gtest.h>

namespace core::etcd {
namespace {

TEST(EtcdCodec, Base64RoundTripsEveryLength) {
  std::string bytes;
  for (int i = 0; i < 20; ++i) {
    auto text = Base64Encode(bytes);
    auto back = Base64Decode(text);
    ASSERT_TRUE(back) << back.error().ToString();
    EXPECT_EQ(*back, bytes);
    bytes.push_back(static_cast<char>(0xf0 + i));
  }
  EXPECT_EQ(Base64Encode("foo"), "Zm9v");
  EXPECT_EQ(Base64Encode("fo"), "Zm8=");
}

TEST(EtcdCodec, Base64RejectsGarbage) {
  for (const char* bad : {"Zm9", "Zm9v!", "Z=9v", "Zm==Zm9v", "Zm9v\n", "===="}) {
    auto r = Base64Decode(bad);
    ASSERT_FALSE(r) << bad;
    EXPECT_EQ(r.error().code(), Error::Code::kProtocol);
  }
}

TEST(EtcdCodec, PrefixEnd) {
  EXPECT_EQ(PrefixEnd("/rpyc/svc/"), "/rpyc/svc0");
  EXPECT_EQ(PrefixEnd(std::string("a\xff", 2)), "b");
  EXPECT_EQ(PrefixEnd(""), std::string(1, '\0'));
  EXPECT_EQ(PrefixEnd("\xff\xff"), std::string(1, '\0'));
}

TEST(EtcdCodec, EmptyRangeHasNoKvsAndNoCount) {
  auto r = ParseRangeReply(R"({"header":{"cluster_id":"1","revision":"7"}})");
  ASSERT_TRUE(r) << r.error().ToString();
  EXPECT_EQ(r->revision, 7);
  EXPECT_TRUE(r->kvs.empty());
  EXPECT_EQ(r->count, 0);
}

TEST(EtcdCodec, RangeWithStringNumbersAbove2To53) {
  auto r = ParseRangeReply(
      R"({"header":{"revision":"9007199254740993"},"kvs":[{"key":"Zm9v","value":"YmFy",)"
      R"("create_revision":"2","mod_revision":"3","version":"2","lease":"7587869283127731813"}],)"
      R"("count":"1"})");
  ASSERT_TRUE(r) << r.error().ToString();
  EXPECT_EQ(r->revision, 9007199254740993);
  ASSERT_EQ(r->kvs.size(), 1u);
  EXPECT_EQ(r->kvs[0].key, "foo");
  EXPECT_EQ(r->kvs[0].value, "bar");
  EXPECT_EQ(r->kvs[0].lease, 7587869283127731813);
  EXPECT_EQ(r->kvs[0].mod_revision, 3);
}

TEST(EtcdCodec, MalformedRepliesAreProtocolErrors) {
  const char* bad[] = {
      "",
      "not json",
      "[1,2]",
      R"({"header":{"revision":"12x"}})",
      R"({"header":{"revision":true}})",
      R"({"header":"h"})",
      R"({"kvs":{"key":"Zm9v"}})",
      R"({"kvs":[{"key":"!!!!"}]})",
      R"({"kvs":[{"key":5}]})",
      R"({"header":{"revision":"1"})",
  };
  for (const char* body : bad) {
    auto r = ParseRangeReply(body);
    ASSERT_FALSE(r) << body;
    EXPECT_EQ(r.error().code(), Error::Code::kProtocol) << body;
  }
}

TEST(EtcdCodec, ErrorObjectIsAnError) {
  auto r = ParseRangeReply(R"({"error":"etcdserver: no leader","code":14})");
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find("no leader"), std::string::npos) << r.error().ToString();
}

TEST(EtcdCodec, LeaseGrant) {
  auto r = ParseLeaseGrantReply(R"({"header":{},"ID":"2324035811963422473","TTL":"240"})");
  ASSERT_TRUE(r) << r.error().ToString();
  EXPECT_EQ(r->id, 2324035811963422473);
  EXPECT_EQ(r->ttl, 240);
  EXPECT_FALSE(ParseLeaseGrantReply(R"({"header":{}})"));
}

TEST(EtcdCodec, KeepAliveWithoutTtlIsExpired) {
  auto live = ParseKeepAliveReply(R"({"result":{"header":{},"ID":"5","TTL":"240"}})"
                                  "\n");
  ASSERT_TRUE(live) << live.error().ToString();
  EXPECT_FALSE(live->expired());
  EXPECT_EQ(live->ttl, 240);
  auto dead = ParseKeepAliveReply(R"({"result":{"header":{},"ID":"5"}})");
  ASSERT_TRUE(dead) << dead.error().ToString();
  EXPECT_TRUE(dead->expired());
  EXPECT_FALSE(ParseKeepAliveReply(R"({"header":{}})"));
}

TEST(EtcdCodec, WatchEvents) {
  auto u = ParseWatchMessage(
      R"({"result":{"header":{"revision":"4"},"events":[{"kv":{"key":"YQ==","value":"MQ==",)"
      R"("mod_revision":"3"}},{"type":"DELETE","kv":{"key":"YQ==","mod_revision":"4"},)"
      R"("prev_kv":{"key":"YQ==","value":"MQ=="}}]}})");
  ASSERT_TRUE(u) << u.error().ToString();
  ASSERT_EQ(u->events.size(), 2u);
  EXPECT_EQ(u->events[0].type, WatchEvent::Type::kPut);  // PUT has no "type": zero value
  EXPECT_EQ(u->events[0].kv.value, "1");
  EXPECT_EQ(u->events[1].type, WatchEvent::Type::kDelete);
  ASSERT_TRUE(u->events[1].prev_kv);
  EXPECT_EQ(u->events[1].prev_kv->value, "1");
  EXPECT_FALSE(u->compacted());
}

TEST(EtcdCodec, WatchCompacted) {
  auto u = ParseWatchMessage(
      R"({"result":{"header":{"raft_term":"2"},"canceled":true,"compact_revision":"2"}})");
  ASSERT_TRUE(u) << u.error().ToString();
  EXPECT_TRUE(u->compacted());
  EXPECT_TRUE(u->canceled);
  EXPECT_FALSE(ParseWatchMessage(R"({"result":{"events":[{"type":"BOGUS","kv":{}}]}})"));
}

TEST(EtcdCodec, ErrorReplyTextSkipsGrpcTrailers) {
  EXPECT_EQ(ErrorReplyText(R"({"error":"etcdserver: requested lease not found",)"
                           R"("message":"etcdserver: requested lease not found","code":5})"
                           "Grpc-Trailer-Content-Type: application/grpc\r\n"),
            "etcdserver: requested lease not found (code 5)");
  EXPECT_EQ(ErrorReplyText("<html>\x01"), "<html>?");
}

TEST(EtcdCodec, RequestsAreBase64AndStringNumbers) {
  EXPECT_EQ(RangeRequest("foo", "fop"), R"({"key":"Zm9v","range_end":"Zm9w"})");
  EXPECT_EQ(TxnPutRequest({{"a", "1"}}, 42),
            R"({"success":[{"requestPut":{"key":"YQ==","lease":"42","value":"MQ=="}}]})");
  EXPECT_EQ(
      TxnRequest({{"a", "1", 42}, {"b", "2", 0}}, {"c"}),
      R"({"success":[{"requestPut":{"key":"YQ==","lease":"42","value":"MQ=="}},)"
      R"({"requestPut":{"key":"Yg==","value":"Mg=="}},{"requestDeleteRange":{"key":"Yw=="}}]})");
  EXPECT_EQ(LeaseIdRequest(7), R"({"ID":"7"})");
  EXPECT_EQ(WatchRequest("a", "b", 5, true),
            R"({"create_request":{"key":"YQ==","prev_kv":true,"range_end":"Yg==",)"
            R"("start_revision":"5"}})");
}

}  // namespace
}  // namespace core::etcd
