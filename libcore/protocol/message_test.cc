// Messages of both generations (docs/protocol.md §3): the golden frames of §3.3 byte for byte,
// generation detection, and every way a payload can be refused.

#include "libcore/protocol/message.h"

#include <memory>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "libcore/base/hex.h"

namespace core::protocol {
namespace {

using brine::MakeStr;
using brine::MakeTuple;
using brine::Value;

Value IdPack(const char* name, int class_id, int instance_id) {
  return MakeTuple({MakeStr(name), class_id, instance_id});
}

struct Golden {
  const char* name;
  Message message;
  std::string v6_hex;  // the 6.x payload; the 5.x one differs only in bytes 0-1
};

std::vector<Golden> Frames() {
  std::vector<Golden> g;
  g.push_back({"REQ seq=0 GETROOT",
               {MsgType::kRequest, 0, MakeRequestArgs(Handler::kGetRoot, BoxValue(MakeTuple({})))},
               "01 11 50 11 53 11 51 02"});
  g.push_back({"REQ seq=7 CLOSE",
               {MsgType::kRequest, 7, MakeRequestArgs(Handler::kClose, BoxValue(MakeTuple({})))},
               "01 11 57 11 52 11 51 02"});
  g.push_back({"REP seq=3 value 2", {MsgType::kReply, 3, BoxValue(2)}, "02 11 53 11 51 52"});
  g.push_back({"EXC seq=4 StopIteration",
               {MsgType::kException, 4, Value(kExcStopIteration)},
               "03 11 54 51"});
  g.push_back({"REQ seq=160 PING 'hi'",
               {MsgType::kRequest, 160,
                MakeRequestArgs(Handler::kPing, BoxValue(MakeTuple({MakeStr("hi")})))},
               "01 11 16 03 31 36 30 11 51 11 51 10 08 0b 68 69"});
  g.push_back(
      {"REQ seq=6 DEL",
       {MsgType::kRequest, 6,
        MakeRequestArgs(
            Handler::kDel,
            MakeTuple({kLabelTuple,
                       MakeTuple({BoxLocalRef(IdPack("builtins.list", 30, 40)), BoxValue(1)})}))},
       "01 11 56 11 5f 11 52 11 11 53 12 08 0e 0d 62 75 69 6c 74 69 6e 73 2e 6c 69 73 74 6e 78 "
       "11 51 51"});
  g.push_back(
      {"REQ seq=3 CALL",
       {MsgType::kRequest, 3,
        MakeRequestArgs(
            Handler::kCall,
            MakeTuple({kLabelTuple, MakeTuple({BoxLocalRef(IdPack("builtins.method", 10, 20)),
                                               BoxValue(MakeTuple({MakeStr("1+1")})),
                                               BoxValue(MakeTuple({}))})}))},
       "01 11 53 11 57 11 52 12 11 53 12 08 0e 0f 62 75 69 6c 74 69 6e 73 2e 6d 65 74 68 6f 64 5a "
       "64 11 51 10 08 0c 31 2b 31 11 51 02"});
  g.push_back(
      {"REP seq=0 root ref",
       {MsgType::kReply, 0, BoxRemoteRef(IdPack("rpyc.core.service.SlaveService", 1000, 2000))},
       "02 11 50 11 54 12 08 0e 1e " + ToHex("rpyc.core.service.SlaveService") +
           " 16 04 31 30 30 30 16 04 32 30 30 30"});
  g.push_back(
      {"EXC seq=5 ValueError",
       {MsgType::kException, 5,
        MakeTuple({MakeTuple({MakeStr("builtins"), MakeStr("ValueError")}),
                   MakeTuple({MakeStr("bad")}),
                   MakeTuple({MakeTuple({MakeStr("_remote_version"), MakeStr("6.0.1")})}),
                   MakeStr("<traceback denied>")})},
       "03 11 55 13 11 08 0e 08 62 75 69 6c 74 69 6e 73 08 0e 0a 56 61 6c 75 65 45 72 72 6f 72 "
       "10 08 0c 62 61 64 10 11 08 0e 0f 5f 72 65 6d 6f 74 65 5f 76 65 72 73 69 6f 6e 08 0e 05 "
       "36 2e 30 2e 31 08 0e 12 3c 74 72 61 63 65 62 61 63 6b 20 64 65 6e 69 65 64 3e"});
  return g;
}

// 5.x payload = 6.x payload with bytes 0-1 `0m 11` replaced by `12 5m`.
std::string V5FromV6(const std::string& v6) {
  std::string v5 = v6;
  v5[1] = static_cast<char>(0x50 + v6[0]);
  v5[0] = 0x12;
  return v5;
}

void ExpectSameMessage(const Message& got, const Message& want) {
  EXPECT_EQ(got.type, want.type);
  EXPECT_EQ(got.seq, want.seq);
  EXPECT_EQ(got.args, *want.args.tree()) << got.args.Repr() << " vs " << want.args.Repr();
}

TEST(Message, EncodedArgsAreSentAsIs) {
  // Args made as brine bytes (shared by a cache, or for one message) give the payload their
  // tree would, and read back as that tree.
  for (Generation gen : {Generation::kV5, Generation::kV6}) {
    const Value boxed = BoxValue(MakeTuple({MakeTuple({MakeStr("__add__"), MakeStr("doc")})}));
    const Message plain{MsgType::kReply, 9, boxed};
    auto bytes = std::make_shared<std::string>();
    brine::Encode(boxed, bytes.get());
    const Message encoded{MsgType::kReply, 9, Args::Encoded(bytes)};
    EXPECT_EQ(EncodeMessage(encoded, gen), EncodeMessage(plain, gen));
    auto back = DecodeMessage(EncodeMessage(encoded, gen), gen);
    ASSERT_TRUE(back.has_value());
    EXPECT_EQ(back->args, boxed);
    ASSERT_NE(back->args.tree(), nullptr);  // what the engine decodes is a tree
    const Message own{MsgType::kReply, 9, Args::Encoded(*bytes)};
    EXPECT_EQ(EncodeMessage(own, gen), EncodeMessage(plain, gen));
    // Every form gives the same value; only a tree is held as one.
    for (const Args* a : {&plain.args, &encoded.args, &own.args}) {
      auto v = a->Decoded();
      ASSERT_TRUE(v.has_value());
      EXPECT_EQ(*v, boxed);
      EXPECT_TRUE(*a == boxed);
      EXPECT_EQ(a->Repr(), boxed.Repr());
    }
    EXPECT_EQ(encoded.args.tree(), nullptr);
    EXPECT_EQ(own.args.tree(), nullptr);
  }
}

TEST(Message, GoldenFramesEncodeByteForByte) {
  for (const auto& g : Frames()) {
    std::string v6 = FromHex(g.v6_hex);
    EXPECT_EQ(ToHex(EncodeMessage(g.message, Generation::kV6)), ToHex(v6)) << g.name;
    EXPECT_EQ(ToHex(EncodeMessage(g.message, Generation::kV5)), ToHex(V5FromV6(v6))) << g.name;
  }
}

TEST(Message, GoldenLengthsMatchTheFrameHeaders) {
  // The §3.3 headers give each payload length; a typo in a vector would show here.
  std::vector<size_t> want = {8, 8, 6, 4, 16, 0x20, 0x2a, 0x33, 0x54};
  auto frames = Frames();
  ASSERT_EQ(frames.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    EXPECT_EQ(FromHex(frames[i].v6_hex).size(), want[i]) << frames[i].name;
  }
}

TEST(Message, GoldenFramesDecodeInBothGenerations) {
  for (const auto& g : Frames()) {
    std::string v6 = FromHex(g.v6_hex);
    std::string v5 = V5FromV6(v6);
    ASSERT_EQ(DetectGeneration(v6), Generation::kV6) << g.name;
    ASSERT_EQ(DetectGeneration(v5), Generation::kV5) << g.name;
    auto m6 = DecodeMessage(v6, Generation::kV6);
    ASSERT_TRUE(m6) << g.name << ": " << m6.error().ToString();
    ExpectSameMessage(*m6, g.message);
    auto m5 = DecodeMessage(v5, Generation::kV5);
    ASSERT_TRUE(m5) << g.name << ": " << m5.error().ToString();
    ExpectSameMessage(*m5, g.message);
  }
}

TEST(Message, CrossGenerationPayloadsAreRefused) {
  std::string v6 = FromHex("01 11 50 11 53 11 51 02");
  std::string v5 = V5FromV6(v6);
  auto a = DecodeMessage(v5, Generation::kV6);
  ASSERT_FALSE(a);
  EXPECT_EQ(a.error().message(), "message: invalid message type: 18");  // as 6.x says it
  auto b = DecodeMessage(v6, Generation::kV5);
  ASSERT_FALSE(b);
  EXPECT_EQ(b.error().code(), Error::Code::kProtocol);
}

TEST(Message, DetectRefusesBoundAndForeignFrames) {
  // A 6.x thread-bound frame starts with a 16-byte (sender tid, target tid) prefix; Linux tids
  // are 0x00007f..., so byte 0 is 0x00.
  std::string bound =
      FromHex("00 00 7f 12 34 56 78 00 00 00 00 00 00 00 00 00 01 11 50 11 53 11 51 02");
  auto d = DetectGeneration(bound);
  ASSERT_FALSE(d);
  EXPECT_EQ(d.error().code(), Error::Code::kProtocol);
  EXPECT_EQ(d.error().message(),
            "message: first byte 0x00 looks like a thread-bound frame (client runs with "
            "RPYC_BIND_THREADS=true); bound mode is not supported");
  auto f = DetectGeneration("GET / HTTP/1.1\r\n");
  ASSERT_FALSE(f);
  EXPECT_EQ(f.error().message(),
            "message: unknown protocol generation, first byte 0x47 (expected 0x12 for rpyc 5.x "
            "or 0x01..0x03 for rpyc 6.x)");
  auto e = DetectGeneration("");
  ASSERT_FALSE(e);
  EXPECT_EQ(e.error().message(), "message: empty payload, cannot detect the protocol generation");
  for (int b : {0x01, 0x02, 0x03}) {
    EXPECT_EQ(DetectGeneration(std::string(1, static_cast<char>(b))), Generation::kV6);
  }
  for (int b : {0x04, 0x10, 0x11, 0x13, 0x51, 0xff}) {
    EXPECT_FALSE(DetectGeneration(std::string(1, static_cast<char>(b)))) << b;
  }
}

std::string DecodeError(const std::string& payload, Generation gen) {
  auto m = DecodeMessage(payload, gen);
  if (m) return "decoded";
  EXPECT_EQ(m.error().code(), Error::Code::kProtocol);
  return m.error().message();
}

TEST(Message, SeqBounds) {
  // 2**64-1 is the largest seq; it is a big brine int, above int64.
  Message m{MsgType::kReply, UINT64_MAX, BoxValue(Value(brine::NoneType{}))};
  for (auto gen : {Generation::kV5, Generation::kV6}) {
    std::string p = EncodeMessage(m, gen);
    EXPECT_NE(p.find("18446744073709551615"), std::string::npos);
    auto back = DecodeMessage(p, gen);
    ASSERT_TRUE(back) << back.error().ToString();
    EXPECT_EQ(back->seq, UINT64_MAX);
  }
  // 2**63 (just above int64) also round-trips.
  m.seq = uint64_t{1} << 63;
  auto back = DecodeMessage(EncodeMessage(m, Generation::kV6), Generation::kV6);
  ASSERT_TRUE(back);
  EXPECT_EQ(back->seq, uint64_t{1} << 63);

  // 6.x: 03 11 <seq> 51.
  EXPECT_EQ(DecodeError(FromHex("03 11 4f 51"), Generation::kV6), "message: negative seq -1");
  EXPECT_EQ(
      DecodeError(FromHex("03 11 16 14") + "-9223372036854775809" + FromHex("51"), Generation::kV6),
      "message: negative seq -9223372036854775809");
  EXPECT_EQ(
      DecodeError(FromHex("03 11 16 14") + "18446744073709551616" + FromHex("51"), Generation::kV6),
      "message: seq 18446744073709551616 does not fit 64 bits");
  EXPECT_EQ(DecodeError(FromHex("03 11 08 0a 31 51"), Generation::kV6),
            "message: seq is not an int: '1'");
  EXPECT_EQ(DecodeError(FromHex("03 11 03 51"), Generation::kV6),
            "message: seq is not an int: True");
  EXPECT_EQ(DecodeError(FromHex("03 11 18 3f f8 00 00 00 00 00 00 51"), Generation::kV6),
            "message: seq is not an int: 1.5");
  // 5.x: 12 53 <seq> 51.
  EXPECT_EQ(DecodeError(FromHex("12 53 4f 51"), Generation::kV5), "message: negative seq -1");
  EXPECT_EQ(DecodeError(FromHex("12 53 00 51"), Generation::kV5),
            "message: seq is not an int: None");
}

TEST(Message, BadMessageType) {
  EXPECT_EQ(DecodeError(FromHex("04 11 50 51"), Generation::kV6),
            "message: invalid message type: 4");
  EXPECT_EQ(DecodeError(FromHex("00 11 50 51"), Generation::kV6),
            "message: invalid message type: 0");
  EXPECT_EQ(DecodeError(FromHex("12 54 50 51"), Generation::kV5),
            "message: invalid message type: 4");
  EXPECT_EQ(DecodeError(FromHex("12 50 50 51"), Generation::kV5),
            "message: invalid message type: 0");
  EXPECT_EQ(DecodeError(FromHex("12 03 50 51"), Generation::kV5),
            "message: invalid message type: True");
  EXPECT_EQ(DecodeError(FromHex("12 08 0a 31 50 51"), Generation::kV5),
            "message: invalid message type: '1'");
}

TEST(Message, WrongTupleShape) {
  EXPECT_EQ(DecodeError(FromHex("01 12 50 51 52"), Generation::kV6),
            "message: expected (seq, args) after the type byte, got (0, 1, 2)");
  EXPECT_EQ(DecodeError(FromHex("01 10 50"), Generation::kV6),
            "message: expected (seq, args) after the type byte, got (0,)");
  EXPECT_EQ(DecodeError(FromHex("01 50"), Generation::kV6),
            "message: expected (seq, args) after the type byte, got 0");
  EXPECT_EQ(DecodeError(FromHex("11 51 50"), Generation::kV5),
            "message: expected (msg, seq, args), got (1, 0)");
  EXPECT_EQ(DecodeError(FromHex("13 51 50 50 50"), Generation::kV5),
            "message: expected (msg, seq, args), got (1, 0, 0, 0)");
  EXPECT_EQ(DecodeError(FromHex("1a 12 51 50 50"), Generation::kV5),
            "message: expected (msg, seq, args), got frozenset({1, 0, 0})");
}

TEST(Message, EmptyTruncatedAndTrailing) {
  EXPECT_EQ(DecodeError("", Generation::kV6), "message: empty payload");
  EXPECT_EQ(DecodeError("", Generation::kV5), "message: empty payload");
  // A 6.x payload that is only the type byte.
  EXPECT_EQ(DecodeError(FromHex("01"), Generation::kV6).rfind("message: brine: ", 0), 0u);
  // Truncated and trailing bytes carry brine's own message, prefixed.
  std::string v6 = FromHex("01 11 50 11 53 11 51 02");
  for (size_t n = 1; n < v6.size(); ++n) {
    std::string err = DecodeError(v6.substr(0, n), Generation::kV6);
    EXPECT_EQ(err.rfind("message: brine: ", 0), 0u) << n << ": " << err;
  }
  EXPECT_EQ(DecodeError(v6 + "x", Generation::kV6),
            "message: brine: 1 trailing byte(s) at offset 7");
}

TEST(Message, DepthLimitIsPassedToBrine) {
  Message m{MsgType::kReply, 1, BoxValue(MakeTuple({MakeTuple({MakeTuple({})})}))};
  std::string p = EncodeMessage(m, Generation::kV6);
  EXPECT_TRUE(DecodeMessage(p, Generation::kV6, brine::DecodeLimits{8}));
  EXPECT_FALSE(DecodeMessage(p, Generation::kV6, brine::DecodeLimits{2}));
}

TEST(Message, RequestArgs) {
  auto r = ParseRequestArgs(MakeRequestArgs(Handler::kGetAttr, BoxValue(1)));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->handler, 4);
  EXPECT_EQ(r->handler_key, Value(4));
  EXPECT_EQ(r->boxed_args, BoxValue(1));
  // Out-of-range and non-int handler keys parse; the dispatcher answers KeyError(handler_key).
  auto big = ParseRequestArgs(MakeTuple({99, MakeTuple({})}));
  ASSERT_TRUE(big);
  EXPECT_EQ(big->handler, 99);
  auto huge = ParseRequestArgs(MakeTuple({Value(*brine::Int::FromDecimal("99999999999")), 1}));
  ASSERT_TRUE(huge);
  EXPECT_EQ(huge->handler, 0);
  EXPECT_EQ(huge->handler_key.Repr(), "99999999999");
  auto str = ParseRequestArgs(MakeTuple({MakeStr("x"), 1}));
  ASSERT_TRUE(str);
  EXPECT_EQ(str->handler, 0);
  EXPECT_EQ(str->handler_key, MakeStr("x"));
  auto yes = ParseRequestArgs(MakeTuple({true, 1}));  // Python: {1: ...}[True] finds 1
  ASSERT_TRUE(yes);
  EXPECT_EQ(yes->handler, 1);
  // Wrong shapes.
  for (const Value& bad : {Value(1), MakeTuple({1}), MakeTuple({1, 2, 3}),
                           Value(brine::FrozenSet{{Value(1), Value(2)}})}) {
    auto e = ParseRequestArgs(bad);
    ASSERT_FALSE(e) << bad.Repr();
    EXPECT_EQ(e.error().message(), "request: expected (handler, args), got " + bad.Repr());
  }
}

TEST(Message, BoxHelpers) {
  EXPECT_EQ(ToHex(brine::Dump(BoxValue(MakeTuple({})))), "11 51 02");
  EXPECT_EQ(ToHex(brine::Dump(BoxLocalRef(IdPack("m", 1, 0)))), "11 53 12 08 0a 6d 51 50");
  EXPECT_EQ(ToHex(brine::Dump(BoxRemoteRef(IdPack("m", 1, 0)))), "11 54 12 08 0a 6d 51 50");
}

TEST(Message, HandlerNames) {
  EXPECT_STREQ(HandlerName(Handler::kPing), "PING");
  EXPECT_STREQ(HandlerName(Handler::kGetRoot), "GETROOT");
  EXPECT_STREQ(HandlerName(Handler::kInstanceCheck), "INSTANCECHECK");
  EXPECT_STREQ(HandlerName(static_cast<Handler>(21)), "UNKNOWN");
}

}  // namespace
}  // namespace core::protocol
