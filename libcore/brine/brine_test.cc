#include "libcore/brine/brine.h"

#include <cmath>
#include <limits>
#include <memory>
#include <string>

#include <gtest/gtest.h>

namespace core::brine {
namespace {

std::string Raw(std::initializer_list<int> bytes) {
  std::string s;
  for (int b : bytes) s.push_back(static_cast<char>(b));
  return s;
}

void ExpectRoundTrip(const Value& v) {
  std::string enc = Dump(v);
  auto dec = Load(enc);
  ASSERT_TRUE(dec.has_value()) << v.Repr() << ": " << dec.error().ToString();
  EXPECT_EQ(*dec, v) << v.Repr();
  EXPECT_EQ(Dump(*dec), enc);
}

std::string LoadError(std::string_view data, DecodeLimits limits = {}) {
  auto v = Load(data, limits);
  if (v.has_value()) return "decoded: " + v->Repr();
  EXPECT_EQ(v.error().code(), Error::Code::kProtocol);
  return v.error().message();
}

TEST(Brine, LargeBytesShareTheOwnersBufferSmallOnesAreCopied) {
  const std::string big(kShareBytesFrom, 'b');
  const std::string enc = Dump(MakeTuple({MakeBytes(big), MakeBytes("small")}));
  auto buffer = std::make_shared<std::string>(enc);
  const std::string_view data(*buffer);
  auto v = Load(data, {}, buffer);
  ASSERT_TRUE(v.has_value()) << v.error().ToString();
  const auto& items = v->as<Tuple>().items;
  const auto& shared = items[0].as<Bytes>();
  EXPECT_TRUE(shared.shared());
  EXPECT_EQ(shared.view(), big);
  EXPECT_GE(shared.view().data(), data.data());  // a view into the buffer, not a copy
  EXPECT_LT(shared.view().data(), data.data() + data.size());
  EXPECT_FALSE(items[1].as<Bytes>().shared());
  EXPECT_EQ(buffer.use_count(), 2);  // the value holds the buffer
  buffer.reset();
  EXPECT_EQ(shared.view(), big);  // still alive through the value
  EXPECT_EQ(Dump(*v), enc);
  // Without an owner everything is copied.
  auto copied = Load(enc);
  ASSERT_TRUE(copied.has_value());
  EXPECT_FALSE(copied->as<Tuple>().items[0].as<Bytes>().shared());
  EXPECT_EQ(*copied, *v);
}

TEST(Brine, IntBoundariesOfEveryLengthClass) {
  for (int64_t v : {int64_t{-49}, int64_t{-48}, int64_t{0}, int64_t{159}, int64_t{160},
                    int64_t{INT32_MAX}, int64_t{INT32_MIN}, INT64_MAX, INT64_MIN}) {
    ExpectRoundTrip(v);
  }
  EXPECT_EQ(Dump(int64_t{160}), Raw({kTagIntShort, 3, '1', '6', '0'}));
  EXPECT_EQ(Dump(INT64_MIN), std::string("\x16\x14-9223372036854775808", 22));
  // 2**1000 and -(2**100), written out, round-trip exactly.
  auto big = Int::FromDecimal(
      "10715086071862673209484250490600018105614048117055336074437503883703510511249361224931983788"
      "15695858127594672917553146825187145285692314043598457757469857480393456777482423098542107460"
      "50683377067271633063587958024962287986452069813883000649883020287306003224981733002536613225"
      "37623040384876190076063839217895620137651577187712452946076128128");
  ASSERT_TRUE(big.has_value());
  EXPECT_FALSE(big->is_small());
  ExpectRoundTrip(*big);
  EXPECT_EQ(static_cast<uint8_t>(Dump(*big)[0]), kTagIntLong);  // 302 digits: long form
  ExpectRoundTrip(*Int::FromDecimal("-1267650600228229401496703205376"));
  // 255 and 256 characters: the border between the short and long int forms.
  std::string t255(255, '7'), t256(256, '7');
  EXPECT_EQ(static_cast<uint8_t>(Dump(*Int::FromDecimal(t255))[0]), kTagIntShort);
  EXPECT_EQ(static_cast<uint8_t>(Dump(*Int::FromDecimal(t256))[0]), kTagIntLong);
  ExpectRoundTrip(*Int::FromDecimal(t255));
  ExpectRoundTrip(*Int::FromDecimal(t256));
}

TEST(Brine, IntLiteralsAreNormalised) {
  // Python accepts non-canonical forms such as 16 01 35 -> 5; we decode them to the same value
  // and re-encode canonically.
  auto v = Load(Raw({0x16, 0x01, '5'}));
  ASSERT_TRUE(v.has_value());
  EXPECT_EQ(*v, Value(5));
  EXPECT_EQ(Dump(*v), Raw({0x55}));
  EXPECT_EQ(*Load(Raw({0x16, 0x03, '0', '0', '7'})), Value(7));
  EXPECT_EQ(*Load(Raw({0x16, 0x02, '-', '0'})), Value(0));
  // 9223372036854775808 does not fit int64: big form, same text.
  auto b = Int::FromDecimal("9223372036854775808");
  ASSERT_TRUE(b.has_value());
  EXPECT_FALSE(b->is_small());
  EXPECT_EQ(b->ToDecimal(), "9223372036854775808");
  EXPECT_TRUE(Int::FromDecimal("-9223372036854775808")->is_small());
}

TEST(Brine, BytesOfEveryLengthClass) {
  for (size_t n : {0, 1, 2, 3, 4, 5, 255, 256, 65535, 65536, 1 << 20}) {
    std::string s(n, '\0');
    for (size_t i = 0; i < n; ++i) s[i] = static_cast<char>(i * 7);
    ExpectRoundTrip(MakeBytes(s));
    ExpectRoundTrip(MakeStr(std::string(n, 'a')));
  }
}

TEST(Brine, TuplesOfEveryLengthClass) {
  for (size_t n : {0, 1, 2, 3, 4, 5, 255, 256, 10000}) {
    std::vector<Value> items;
    for (size_t i = 0; i < n; ++i) items.emplace_back(static_cast<int64_t>(i));
    ExpectRoundTrip(MakeTuple(items));
    ExpectRoundTrip(FrozenSet{items});
  }
}

TEST(Brine, HandEncodedTuplesAndStrsMatchEncode) {
  // EncodeTupleHeader() + items and EncodeStr() write exactly what Encode() of the Value does.
  for (size_t n : {0, 1, 2, 3, 4, 5, 255, 256, 10000}) {
    std::vector<Value> items;
    std::string by_hand;
    EncodeTupleHeader(n, &by_hand);
    for (size_t i = 0; i < n; ++i) {
      std::string text(i % 300, static_cast<char>('a' + i % 26));
      items.push_back(MakeStr(text));
      EncodeStr(text, &by_hand);
    }
    EXPECT_EQ(by_hand, Dump(MakeTuple(items))) << n;
  }
  std::string s;
  EncodeStr("", &s);
  EXPECT_EQ(s, Raw({kTagStr, kTagEmptyBytes}));
}

TEST(Brine, FloatsAreBitExact) {
  for (double d :
       {0.0, -0.0, 1.5, -1e308, 5e-324, std::numeric_limits<double>::infinity(),
        -std::numeric_limits<double>::infinity(), std::numeric_limits<double>::quiet_NaN()}) {
    ExpectRoundTrip(d);
    ExpectRoundTrip(Complex{d, -d});
  }
}

TEST(Brine, NestedMixedValues) {
  Value v = MakeTuple({NoneType{}, true, false, EllipsisType{}, NotImplementedType{},
                       MakeStr("\xe2\x82\xac"), MakeBytes("\xff"), Slice{{NoneType{}, 5, -1}},
                       FrozenSet{{MakeStr("a"), MakeTuple({1, 2})}}, Complex{0, 1}});
  ExpectRoundTrip(v);
  EXPECT_EQ(v.Repr(),
            "(None, True, False, Ellipsis, NotImplemented, '\xe2\x82\xac', b'\\xff', "
            "slice(None, 5, -1), frozenset({'a', (1, 2)}), (0+1j))");
}

TEST(Brine, FrozenSetEqualityIgnoresOrder) {
  EXPECT_EQ(Value(FrozenSet{{1, 2}}), Value(FrozenSet{{2, 1}}));
  EXPECT_NE(Value(FrozenSet{{1, 2}}), Value(FrozenSet{{1, 1}}));
  EXPECT_NE(Value(MakeTuple({1, 2})), Value(MakeTuple({2, 1})));
  EXPECT_NE(Value(MakeStr("a")), Value(MakeBytes("a")));
  EXPECT_NE(Value(true), Value(1));
}

TEST(BrineErrors, TruncatedAndEmpty) {
  EXPECT_EQ(LoadError(""), "brine: truncated input: expected a tag at offset 0");
  EXPECT_EQ(LoadError(Raw({0x0d, 'a', 'b'})), "brine: truncated input in bytes at offset 0");
  EXPECT_EQ(LoadError(Raw({0x0e})), "brine: truncated input in bytes length at offset 0");
  EXPECT_EQ(LoadError(Raw({0x0f, 0, 0})), "brine: truncated input in bytes length at offset 0");
  EXPECT_EQ(LoadError(Raw({0x0f, 0, 0, 1, 0, 'x'})), "brine: truncated input in bytes at offset 0");
  EXPECT_EQ(LoadError(Raw({0x12, 0x51, 0x52})),
            "brine: tuple of 3 items but only 2 byte(s) left at offset 0");
  EXPECT_EQ(LoadError(Raw({0x11, 0x51, 0x0d, 'a'})), "brine: truncated input in bytes at offset 2");
  EXPECT_EQ(LoadError(Raw({0x18, 0, 0, 0})), "brine: truncated input in float at offset 0");
  EXPECT_EQ(LoadError(Raw({0x1b, 0, 0, 0, 0, 0, 0, 0, 0, 1})),
            "brine: truncated input in complex at offset 0");
  EXPECT_EQ(LoadError(Raw({0x16, 0x03, '1', '2'})),
            "brine: truncated input in int literal at offset 0");
  EXPECT_EQ(LoadError(Raw({0x08})), "brine: truncated input in str at offset 0");
  EXPECT_EQ(LoadError(Raw({0x19})), "brine: truncated input in slice at offset 0");
}

TEST(BrineErrors, EveryTruncationOfAValidEncodingFails) {
  Value v = MakeTuple({1, MakeStr("hello"), MakeBytes(std::string(300, 'z')), 1.5, Complex{1, 2},
                       *Int::FromDecimal("123456789012345678901234567890"), FrozenSet{{1}},
                       Slice{{1, 2, 3}}, MakeTuple({MakeTuple({})})});
  std::string enc = Dump(v);
  for (size_t n = 0; n < enc.size(); ++n) {
    EXPECT_FALSE(Load(std::string_view(enc).substr(0, n)).has_value()) << "prefix " << n;
  }
}

TEST(BrineErrors, TrailingBytes) {
  EXPECT_EQ(LoadError(Raw({0x50, 0x50})), "brine: 1 trailing byte(s) at offset 1");
}

TEST(BrineErrors, UnknownTags) {
  for (int tag : {0x07, 0x09, 0x1c, 0x1d, 0x1e, 0x1f, 0xf0, 0xff}) {
    char buf[8];
    std::snprintf(buf, sizeof buf, "%02x", tag);
    EXPECT_EQ(LoadError(Raw({tag})), std::string("brine: unknown tag 0x") + buf + " at offset 0");
  }
  EXPECT_EQ(LoadError(Raw({0x11, 0x50, 0x07})), "brine: unknown tag 0x07 at offset 2");
}

TEST(BrineErrors, MalformedPayloads) {
  EXPECT_EQ(LoadError(Raw({0x08, 0x50})),
            "brine: str payload must be bytes, found tag 0x50 at "
            "offset 1");
  EXPECT_EQ(LoadError(Raw({0x19, 0x11, 0x50, 0x50})),
            "brine: slice needs 3 items, found 2 at "
            "offset 1");
  EXPECT_EQ(LoadError(Raw({0x1a, 0x50})),
            "brine: frozenset payload must be a tuple, found tag 0x50 at offset 1");
  EXPECT_EQ(LoadError(Raw({0x16, 0x02, '1', 'x'})),
            "brine: malformed int literal: not a digit at offset 0");
  EXPECT_EQ(LoadError(Raw({0x16, 0x00})), "brine: malformed int literal: no digits at offset 0");
  EXPECT_EQ(LoadError(Raw({0x16, 0x01, '-'})),
            "brine: malformed int literal: no digits at offset 0");
  EXPECT_EQ(LoadError(Raw({0x16, 0x02, '+', '1'})),
            "brine: malformed int literal: not a digit at offset 0");
}

TEST(BrineErrors, InvalidUtf8) {
  for (std::string bad :
       {std::string("\xc0\x80"), std::string("\xed\xa0\x80"), std::string("\xf4\x90\x80\x80"),
        std::string("\xe2\x82"), std::string("\x80"), std::string("\xf8\x88\x80\x80\x80")}) {
    std::string enc = Raw({0x08});
    Encode(MakeBytes(bad), &enc);
    EXPECT_EQ(LoadError(enc), "brine: invalid UTF-8 in str at offset 0");
  }
  EXPECT_TRUE(IsValidUtf8("\xf0\x9f\x98\x80 \xef\xbf\xbf \x7f"));
}

TEST(BrineErrors, Utf8CheckedAtEveryPositionOfLongAsciiRuns) {
  // The validator skips ASCII eight bytes at a time: a bad byte must be found wherever it is.
  for (size_t at = 0; at < 40; ++at) {
    std::string s(40, 'a');
    s[at] = '\x80';
    EXPECT_FALSE(IsValidUtf8(s)) << at;
    s[at] = '\xc3';  // a lead byte whose continuation is missing or ASCII
    EXPECT_FALSE(IsValidUtf8(s)) << at;
    if (at + 1 < s.size()) {
      s[at + 1] = '\xa9';  // now a valid 'é'
      EXPECT_TRUE(IsValidUtf8(s)) << at;
    }
  }
  EXPECT_TRUE(IsValidUtf8(std::string(1000, 'x')));
  EXPECT_FALSE(IsValidUtf8(std::string(1000, 'x') + "\xed\xa0\x80"));  // a surrogate
}

TEST(BrineErrors, NestingLimit) {
  std::string deep;
  for (int i = 0; i < 300; ++i) deep.push_back(static_cast<char>(kTagTuple1));
  deep.push_back(0x50);
  EXPECT_EQ(LoadError(deep), "brine: nesting deeper than 256 at offset 257");
  EXPECT_EQ(LoadError(deep, DecodeLimits{.max_depth = 1000}).substr(0, 7), "decoded");
  // Nesting through frozensets counts too.
  std::string fs;
  for (int i = 0; i < 200; ++i) fs += Raw({0x1a, 0x10});
  fs.push_back(0x50);
  EXPECT_EQ(LoadError(fs).substr(0, 28), "brine: nesting deeper than 2");
}

TEST(BrineErrors, ValueCountLimit) {
  // A flat tuple of 1000 immediate ints is 1001 values: refused under a limit of 1000 at the
  // offset of the value past the limit, accepted at 1001.
  std::vector<Value> items(1000, Value(1));
  std::string enc = Dump(MakeTuple(items));
  EXPECT_EQ(LoadError(enc, DecodeLimits{.max_values = 1000}),
            "brine: more than 1000 values at offset " + std::to_string(enc.size() - 1));
  EXPECT_TRUE(Load(enc, DecodeLimits{.max_values = 1001}).has_value());
}

TEST(BrineErrors, HugeCountsAllocateNothing) {
  // A 4-byte count of 4 billion items in a 9-byte input is refused before any allocation.
  EXPECT_EQ(LoadError(Raw({0x15, 0xff, 0xff, 0xff, 0xff, 0x50, 0x50, 0x50, 0x50})),
            "brine: tuple of 4294967295 items but only 4 byte(s) left at offset 0");
  EXPECT_EQ(LoadError(Raw({0x0f, 0xff, 0xff, 0xff, 0xff, 0x50})),
            "brine: truncated input in bytes at offset 0");
  EXPECT_EQ(LoadError(Raw({0x17, 0xff, 0xff, 0xff, 0xff, '1'})),
            "brine: truncated input in int literal at offset 0");
}

}  // namespace
}  // namespace core::brine
