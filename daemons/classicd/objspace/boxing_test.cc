// Boxing and unboxing values (docs/protocol.md §4.1).

#include <Python.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <future>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <gtest/gtest.h>
#include <malloc.h>
#include <sys/wait.h>
#include <unistd.h>

#include "daemons/classicd/objspace/objspace.h"
#include "daemons/classicd/objspace/objspace_testing.h"
#include "libcore/brine/brine.h"
#include "libcore/brine/value.h"
#include "libcore/protocol/consts.h"
#include "libcore/protocol/object_space.h"

namespace classicd::objspace::testing {
namespace {

// --- values ------------------------------------------------------------------------------------

TEST_F(ObjSpaceTest, DumpableRulesAreExactTypes) {
  EXPECT_EQ(Label(Eval("(1, 'a', b'b', 2.5, None, True, ..., NotImplemented, 1j)")), I(1));
  EXPECT_EQ(Label(Eval("frozenset({1})")), I(1));
  EXPECT_EQ(Label(Eval("slice(1, None, 2)")), I(1));
  EXPECT_EQ(Eval("True"), ByVal(true));
  EXPECT_EQ(NamePack(Eval("[1]")), "builtins.list");
  EXPECT_EQ(NamePack(Eval("bytearray(b'x')")), "builtins.bytearray");
  Execute("import enum\nclass E(enum.IntEnum):\n  A = 1\nclass MyStr(str): pass");
  EXPECT_EQ(NamePack(Eval("E.A")), "builtins.E");
  EXPECT_EQ(NamePack(Eval("MyStr('x')")), "builtins.MyStr");
  // A tuple holding a reference is boxed item by item.
  Value mixed = Eval("(1, [2])");
  EXPECT_EQ(Label(mixed), I(2));
  const auto& items = Payload(mixed).as<brine::Tuple>().items;
  EXPECT_EQ(items[0], ByVal(I(1)));
  EXPECT_EQ(Label(items[1]), I(4));
  // Nested, empty and long tuples of boxes (the reply is encoded as it is boxed).
  Value nested = Eval("((1, [2]), (), 'x' * 300, ([3], ([4],)), ([5], 6, 7, 8, 9, 10))");
  ASSERT_EQ(Label(nested), I(2));
  const auto& n = Payload(nested).as<brine::Tuple>().items;
  ASSERT_EQ(n.size(), 5u);
  EXPECT_EQ(Label(n[0]), I(2));
  EXPECT_EQ(Payload(n[0]).as<brine::Tuple>().items[0], ByVal(I(1)));
  EXPECT_EQ(NamePack(Payload(n[0]).as<brine::Tuple>().items[1]), "builtins.list");
  EXPECT_EQ(n[1], ByVal(T({})));
  EXPECT_EQ(n[2], ByVal(S(std::string(300, 'x'))));
  const auto& deep = Payload(Payload(n[3]).as<brine::Tuple>().items[1]).as<brine::Tuple>().items;
  ASSERT_EQ(deep.size(), 1u);
  EXPECT_EQ(NamePack(deep[0]), "builtins.list");
  const auto& six = Payload(n[4]).as<brine::Tuple>().items;
  ASSERT_EQ(six.size(), 6u);
  EXPECT_EQ(six[5], ByVal(I(10)));
  // A frozenset holding a non-dumpable goes by reference as a whole.
  Execute("class H: pass");
  EXPECT_EQ(NamePack(Eval("frozenset({H()})")), "builtins.frozenset");
}

TEST_F(ObjSpaceTest, BigIntsBothWays) {
  Value big = Eval("10**5000 + 7");
  const auto& i = Payload(big).as<brine::Int>();
  ASSERT_FALSE(i.is_small());
  EXPECT_EQ(i.big_decimal().size(), 5001u);
  EXPECT_EQ(i.big_decimal().substr(0, 2), "10");
  EXPECT_EQ(i.big_decimal().substr(4998), "007");
  Value neg = Eval("-(2**64)");
  EXPECT_EQ(Payload(neg).as<brine::Int>().big_decimal(), "-18446744073709551616");
  EXPECT_EQ(Eval("-2**63"), ByVal(I(INT64_MIN)));
  // Into Python: 20000 digits, past the 4300-digit str() limit.
  std::string digits = "-9" + std::string(19999, '1');
  auto in = brine::Int::FromDecimal(digits);
  ASSERT_TRUE(in.has_value());
  Execute("def check(n): return (n % 1000, n < 0, len(hex(n)))");
  Value fn = EvalRef("check");
  Outcome o = CallFn(fn, {ByVal(*in)});
  ASSERT_EQ(o.kind, Outcome::Kind::kReply) << o.value.Repr();
  const auto& r = Payload(o.value).as<brine::Tuple>().items;
  EXPECT_EQ(r[0], I(889));  // Python's modulo of a negative number
  EXPECT_EQ(r[1], brine::Value(true));
  // And back unchanged.
  Value echo = Reply(Handler::kPing, ByVal(T({*in})));
  EXPECT_EQ(Payload(echo).as<brine::Int>().ToDecimal(), digits);
}

TEST_F(ObjSpaceTest, LargeBytesAndTuples) {
  Value b = Eval("b'x' * (4 << 20)");
  EXPECT_EQ(Payload(b).as<brine::Bytes>().size(), 4u << 20);
  Value t = Eval("tuple(range(10000))");
  EXPECT_EQ(Payload(t).as<brine::Tuple>().items.size(), 10000u);
  std::string big(1 << 20, 'y');
  Value echo = Reply(Handler::kPing, ByVal(T({brine::MakeBytes(big)})));
  EXPECT_EQ(Payload(echo).as<brine::Bytes>().view(), big);
}

TEST_F(ObjSpaceTest, FloatsAndStrings) {
  EXPECT_EQ(Eval("-0.0"), ByVal(-0.0));
  EXPECT_EQ(Eval("'\\u00e9'"), ByVal(S("\xc3\xa9")));
  EXPECT_EQ(Eval("'a\\U0001F600'"), ByVal(S("a\xf0\x9f\x98\x80")));
  EXPECT_EQ(Eval("''"), ByVal(S("")));
  // Sending a non-ASCII str does not grow it with a cached UTF-8 copy.
  Execute("import sys\nbig = '\\u00e9' * 1000\nsize = sys.getsizeof(big)");
  Eval("big");
  EXPECT_EQ(Eval("sys.getsizeof(big) == size"), ByVal(true));
  Value v = Eval("float('nan')");
  EXPECT_EQ(Label(v), I(1));
}

}  // namespace
}  // namespace classicd::objspace::testing
