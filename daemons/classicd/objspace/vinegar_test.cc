// Exceptions as replies (docs/protocol.md §6).

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

// --- exceptions (§6) ---------------------------------------------------------------------------

TEST_F(ObjSpaceTest, BuiltinExceptionVinegar) {
  Outcome o = EvalOutcome("1/0");
  ASSERT_EQ(o.kind, Outcome::Kind::kException);
  const auto& v = o.value.tree()->as<brine::Tuple>().items;
  ASSERT_EQ(v.size(), 4u);
  EXPECT_EQ(v[0], T({S("builtins"), S("ZeroDivisionError")}));
  EXPECT_EQ(v[1], T({S("division by zero")}));
  const auto& attrs = v[2].as<brine::Tuple>().items;
  ASSERT_FALSE(attrs.empty());
  EXPECT_EQ(attrs.back(), T({S("_remote_version"), S("6.0.1")}));
  const std::string& tb = v[3].as<brine::Str>().utf8;
  EXPECT_EQ(tb.rfind("Traceback (most recent call last):\n", 0), 0u) << tb;
  EXPECT_NE(tb.find("File \"<string>\", line 1"), std::string::npos) << tb;
  EXPECT_NE(tb.find("ZeroDivisionError: division by zero\n"), std::string::npos) << tb;
  EXPECT_EQ(tb.find("classicd-support"), std::string::npos) << tb;  // our frames are hidden
}

TEST_F(ObjSpaceTest, VersionFollowsGeneration) {
  peer_.gen = Generation::kV5;
  Outcome o = EvalOutcome("1/0");
  const auto& attrs = o.value.tree()->as<brine::Tuple>().items[2].as<brine::Tuple>().items;
  EXPECT_EQ(attrs.back(), T({S("_remote_version"), S("5.3.0")}));
}

TEST_F(ObjSpaceTest, OsErrorAttributes) {
  Outcome o = EvalOutcome("open('/nonexistent/classicd')");
  const auto& v = o.value.tree()->as<brine::Tuple>().items;
  EXPECT_EQ(v[0], T({S("builtins"), S("FileNotFoundError")}));
  const auto& attrs = v[2].as<brine::Tuple>().items;
  EXPECT_NE(std::find(attrs.begin(), attrs.end(), T({S("errno"), I(2)})), attrs.end());
  EXPECT_NE(std::find(attrs.begin(), attrs.end(), T({S("filename"), S("/nonexistent/classicd")})),
            attrs.end());
  EXPECT_NE(std::find(attrs.begin(), attrs.end(), T({S("filename2"), brine::NoneType{}})),
            attrs.end());
}

TEST_F(ObjSpaceTest, CustomExceptionAndNonDumpableArgs) {
  Execute("class MyErr(Exception):\n  pass\n");
  Outcome o = CallFn(RootMethod("execute"), {ByVal(S("raise MyErr('boom', [1])"))});
  ASSERT_EQ(o.kind, Outcome::Kind::kException);
  const auto& v = o.value.tree()->as<brine::Tuple>().items;
  EXPECT_EQ(v[0], T({S("builtins"), S("MyErr")}));
  EXPECT_EQ(v[1], T({S("boom"), S("[1]")}));  // non-dumpable args as repr
  EXPECT_NE(v[3].as<brine::Str>().utf8.find("MyErr: ('boom', [1])"), std::string::npos);
}

TEST_F(ObjSpaceTest, StopIterationIsOne) {
  Outcome o = EvalOutcome("next(iter([]))");
  ASSERT_EQ(o.kind, Outcome::Kind::kException);
  EXPECT_EQ(o.value, I(1));
}

TEST_F(ObjSpaceTest, SystemExitAndKeyboardInterruptAreForwarded) {
  Outcome o = CallFn(RootMethod("execute"), {ByVal(S("import sys; sys.exit(3)"))});
  ASSERT_EQ(o.kind, Outcome::Kind::kException);
  EXPECT_EQ(o.value.tree()->as<brine::Tuple>().items[0], T({S("builtins"), S("SystemExit")}));
  const auto& attrs = o.value.tree()->as<brine::Tuple>().items[2].as<brine::Tuple>().items;
  EXPECT_NE(std::find(attrs.begin(), attrs.end(), T({S("code"), I(3)})), attrs.end());
  o = CallFn(RootMethod("execute"), {ByVal(S("raise KeyboardInterrupt"))});
  EXPECT_EQ(o.value.tree()->as<brine::Tuple>().items[0],
            T({S("builtins"), S("KeyboardInterrupt")}));
  EXPECT_EQ(Eval("6*7"), ByVal(I(42)));  // still alive
}

TEST_F(ObjSpaceTest, GetConnHasLastTraceback) {
  EXPECT_EQ(EvalOutcome("1/0").kind, Outcome::Kind::kException);
  Outcome c = CallFn(RootMethod("getconn"), {});
  EXPECT_EQ(NamePack(c.value), "rpyc.core.protocol.Connection");
  Value tb = GetAttr(Idp(c.value), "_last_traceback");
  EXPECT_EQ(NamePack(tb), "builtins.traceback");
}

TEST_F(ObjSpaceTest, UnencodableResultsGiveExceptionReplies) {
  Value eval = RootMethod("eval");
  size_t before = space_->LocalObjectCount();  // root and eval
  Outcome o = CallFn(eval, {ByVal(S("'a\\ud800b'"))});
  ASSERT_EQ(o.kind, Outcome::Kind::kException);
  EXPECT_EQ(o.value.tree()->as<brine::Tuple>().items[0],
            T({S("builtins"), S("UnicodeEncodeError")}));
  o = CallFn(eval, {ByVal(S("(type('O', (), {})(), [1])"))});
  ASSERT_EQ(o.kind, Outcome::Kind::kException) << o.value.Repr();
  EXPECT_EQ(o.value.tree()->as<brine::Tuple>().items[0], T({S("builtins"), S("AttributeError")}));
  o = CallFn(eval, {ByVal(S("([2], type('O', (), {})())"))});
  ASSERT_EQ(o.kind, Outcome::Kind::kException) << o.value.Repr();
  // The partly boxed replies were rolled back.
  EXPECT_EQ(space_->LocalObjectCount(), before);
  EXPECT_EQ(Eval("1"), ByVal(I(1)));
}

TEST_F(ObjSpaceTest, ExceptionWithUnencodableMessage) {
  Outcome o = EvalOutcome("(_ for _ in ()).throw(ValueError('x\\udcff'))");
  ASSERT_EQ(o.kind, Outcome::Kind::kException);
  const auto& v = o.value.tree()->as<brine::Tuple>().items;
  EXPECT_EQ(v[0], T({S("builtins"), S("ValueError")}));
  EXPECT_EQ(v[1], T({S("'x\\udcff'")}));
}

}  // namespace
}  // namespace classicd::objspace::testing
