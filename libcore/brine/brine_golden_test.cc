// The golden vectors of docs/protocol.md §1.3, byte for byte, in both directions.

#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "libcore/base/hex.h"
#include "libcore/brine/brine.h"

namespace core::brine {
namespace {

Value BigInt(const char* digits) { return Value(*Int::FromDecimal(digits)); }

struct Golden {
  const char* name;
  Value value;
  std::string hex;
};

std::vector<Golden> Vectors() {
  std::string pow10_300 = "1" + std::string(300, '0');
  std::string x255(255, 'x'), x256(256, 'x');
  std::string hex_x255, hex_x256, hex_pow = "17 00 00 01 2d 31";
  for (int i = 0; i < 255; ++i) hex_x255 += "78";
  for (int i = 0; i < 256; ++i) hex_x256 += "78";
  for (int i = 0; i < 300; ++i) hex_pow += "30";
  return {
      {"None", NoneType{}, "00"},
      {"True", true, "03"},
      {"False", false, "04"},
      {"NotImplemented", NotImplementedType{}, "05"},
      {"Ellipsis", EllipsisType{}, "06"},
      {"0", 0, "50"},
      {"-1", -1, "4f"},
      {"-48", -48, "20"},
      {"159", 159, "ef"},
      {"160", 160, "16 03 31 36 30"},
      {"-49", -49, "16 03 2d 34 39"},
      {"255", 255, "16 03 32 35 35"},
      {"2**64", BigInt("18446744073709551616"),
       "16 14 31 38 34 34 36 37 34 34 30 37 33 37 30 39 35 35 31 36 31 36"},
      {"2**64-1", BigInt("18446744073709551615"),
       "16 14 31 38 34 34 36 37 34 34 30 37 33 37 30 39 35 35 31 36 31 35"},
      {"-2**63", Value(INT64_MIN),
       "16 14 2d 39 32 32 33 33 37 32 30 33 36 38 35 34 37 37 35 38 30 38"},
      {"-(2**100)", BigInt("-1267650600228229401496703205376"),
       "16 20 2d 31 32 36 37 36 35 30 36 30 30 32 32 38 32 32 39 34 30 31 34 39 36 37 30 33 32 30 "
       "35 33 37 36"},
      {"10**300", BigInt(pow10_300.c_str()), hex_pow},
      {"b''", MakeBytes(""), "01"},
      {"b'x'", MakeBytes("x"), "0a 78"},
      {"b'abcd'", MakeBytes("abcd"), "0d 61 62 63 64"},
      {"b'abcde'", MakeBytes("abcde"), "0e 05 61 62 63 64 65"},
      {"b'x'*255", MakeBytes(x255), "0e ff " + hex_x255},
      {"b'x'*256", MakeBytes(x256), "0f 00 00 01 00 " + hex_x256},
      {"''", MakeStr(""), "08 01"},
      {"'é'", MakeStr("\xc3\xa9"), "08 0b c3 a9"},
      {"'abc'", MakeStr("abc"), "08 0c 61 62 63"},
      {"'RPYC'", MakeStr("RPYC"), "08 0d 52 50 59 43"},
      {"()", MakeTuple({}), "02"},
      {"(1,)", MakeTuple({1}), "10 51"},
      {"(1, 2, (3, 4))", MakeTuple({1, 2, MakeTuple({3, 4})}), "12 51 52 11 53 54"},
      {"(1, (2, ('a',)))", MakeTuple({1, MakeTuple({2, MakeTuple({MakeStr("a")})})}),
       "11 51 11 52 10 08 0a 61"},
      {"tuple(range(5))", MakeTuple({0, 1, 2, 3, 4}), "14 05 50 51 52 53 54"},
      {"frozenset()", FrozenSet{}, "1a 02"},
      {"frozenset({1})", FrozenSet{{1}}, "1a 10 51"},
      {"frozenset({1, 2})", FrozenSet{{1, 2}}, "1a 11 51 52"},
      {"slice(1, None, 2)", Slice{{1, NoneType{}, 2}}, "19 12 51 00 52"},
      {"1.5", 1.5, "18 3f f8 00 00 00 00 00 00"},
      {"-0.0", -0.0, "18 80 00 00 00 00 00 00 00"},
      {"1+2j", Complex{1.0, 2.0}, "1b 3f f0 00 00 00 00 00 00 40 00 00 00 00 00 00 00"},
  };
}

TEST(BrineGolden, EncodeMatchesPython) {
  for (const Golden& g : Vectors()) {
    EXPECT_EQ(Dump(g.value), FromHex(g.hex)) << g.name;
  }
}

TEST(BrineGolden, DecodeMatchesPython) {
  for (const Golden& g : Vectors()) {
    auto v = Load(FromHex(g.hex));
    ASSERT_TRUE(v.has_value()) << g.name << ": " << v.error().ToString();
    EXPECT_EQ(*v, g.value) << g.name << " decoded as " << v->Repr();
  }
}

}  // namespace
}  // namespace core::brine
