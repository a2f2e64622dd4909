// The handlers other than the session's (docs/protocol.md §5.2).

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

// --- the other handlers (§5.2) -----------------------------------------------------------------

TEST_F(ObjSpaceTest, ReprStrHashDir) {
  Value lst = EvalRef("[1, 'a']");
  EXPECT_EQ(Reply(Handler::kRepr, Boxes({LocalRef(lst)})), ByVal(S("[1, 'a']")));
  EXPECT_EQ(Reply(Handler::kStr, Boxes({LocalRef(lst)})), ByVal(S("[1, 'a']")));
  Value e = Exc(Handler::kHash, Boxes({LocalRef(lst)}));
  EXPECT_EQ(e.as<brine::Tuple>().items[0], T({S("builtins"), S("TypeError")}));
  Value cls = EvalRef("int");
  Value h = Reply(Handler::kHash, Boxes({LocalRef(cls)}));
  EXPECT_EQ(Label(h), I(1));
  Value d = Reply(Handler::kDir, Boxes({LocalRef(lst)}));
  const auto& names = Payload(d).as<brine::Tuple>().items;
  EXPECT_NE(std::find(names.begin(), names.end(), S("append")), names.end());
}

TEST_F(ObjSpaceTest, CmpUsesTheType) {
  Value a = EvalRef("[1, 2]");
  Value b = EvalRef("[1, 2]");
  EXPECT_EQ(Reply(Handler::kCmp, Boxes({LocalRef(a), LocalRef(b), ByVal(S("__eq__"))})),
            ByVal(true));
  EXPECT_EQ(Reply(Handler::kCmp, Boxes({LocalRef(a), ByVal(T({I(1)})), ByVal(S("__lt__"))})),
            ByVal(brine::NotImplementedType{}));
  // An instance attribute named __eq__ is not used: the lookup is on type(obj).
  Execute("class C:\n  pass\nc = C()\nc.__eq__ = lambda o: 'instance'");
  Value c = EvalRef("c");
  EXPECT_EQ(Reply(Handler::kCmp, Boxes({LocalRef(c), LocalRef(c), ByVal(S("__eq__"))})),
            ByVal(true));
}

TEST_F(ObjSpaceTest, CallWithKwargs) {
  Execute("def f(a, b=0, *, c=0): return (a, b, c)");
  Value f = EvalRef("f");
  Outcome o =
      Run(Handler::kCall,
          Boxes({LocalRef(f), ByVal(T({I(1)})), ByVal(T({T({S("c"), I(3)}), T({S("b"), I(2)})}))}));
  EXPECT_EQ(o.value, ByVal(T({I(1), I(2), I(3)})));
  o = Run(Handler::kCall, Boxes({LocalRef(f), ByVal(T({I(5)}))}));  // kwargs missing
  EXPECT_EQ(o.value, ByVal(T({I(5), I(0), I(0)})));
}

// Builtins that read their caller's frame, called as a client calls them (docs/embedding.md
// §3.7): from a frame of their own, whose globals are _classicd_calls' and persist, and whose
// locals die with the call.
TEST_F(ObjSpaceTest, CallsRunInAFrame) {
  Value eval = EvalRef("eval");
  EXPECT_EQ(CallFn(eval, {ByVal(S("6*7"))}).value, ByVal(I(42)));
  EXPECT_EQ(CallFn(eval, {ByVal(S("__name__"))}).value, ByVal(S("_classicd_calls")));
  Value builtins = EvalRef("__import__('builtins')");
  auto call_attr = [&](const char* name, const char* code, const Value& kwargs) {
    return Run(Handler::kCallAttr,
               Boxes({LocalRef(builtins), ByVal(S(name)), ByVal(T({S(code)})), kwargs}));
  };
  EXPECT_EQ(call_attr("exec", "x = 1\nglobal g\ng = 2", ByVal(T({}))).value,
            ByVal(brine::NoneType{}));
  Value e = Exc(Handler::kCall, Boxes({LocalRef(eval), ByVal(T({S("x")})), ByVal(T({}))}));
  EXPECT_EQ(e.as<brine::Tuple>().items[0], T({S("builtins"), S("NameError")}));
  EXPECT_EQ(CallFn(eval, {ByVal(S("g"))}).value, ByVal(I(2)));
  // With keyword arguments (call_kw): exec's closure=.
  EXPECT_EQ(call_attr("exec", "assert g == 2 and 'x' not in locals()",
                      ByVal(T({T({S("closure"), brine::NoneType{}})})))
                .value,
            ByVal(brine::NoneType{}));
  // The trampoline's frames stay out of tracebacks, as the root's do.
  Outcome o = CallFn(eval, {ByVal(S("1/0"))});
  ASSERT_EQ(o.kind, Outcome::Kind::kException);
  const std::string& tb = Tree(o.value).as<brine::Tuple>().items[3].as<brine::Str>().utf8;
  EXPECT_EQ(tb.find("classicd-support"), std::string::npos) << tb;
  EXPECT_NE(tb.find("File \"<string>\", line 1"), std::string::npos) << tb;
}

TEST_F(ObjSpaceTest, CallsWithoutArgumentsRunInAFrame) {
  // No arguments (call0): globals() and locals() see a frame of their own, each call a new one.
  Value globals = EvalRef("globals");
  Value g = Idp(CallFn(globals, {}).value);
  EXPECT_EQ(Reply(Handler::kCallAttr,
                  Boxes({LocalRef(g), ByVal(S("get")), ByVal(T({S("__name__")})), ByVal(T({}))})),
            ByVal(S("_classicd_calls")));
  Value locals = EvalRef("locals");
  Outcome a = CallFn(locals, {});
  ASSERT_EQ(a.kind, Outcome::Kind::kReply);
  Outcome b = CallFn(locals, {});
  ASSERT_EQ(b.kind, Outcome::Kind::kReply);
  EXPECT_NE(Idp(a.value), Idp(b.value));  // not one frame's dict lent twice
  // The frame's locals are those of a call with arguments: dir() there is ['args', 'obj'].
  Value names = Idp(CallFn(EvalRef("dir"), {}).value);
  EXPECT_EQ(Reply(Handler::kCallAttr,
                  Boxes({LocalRef(names), ByVal(S("__len__")), ByVal(T({})), ByVal(T({}))})),
            ByVal(I(2)));
  // An exception from a call without arguments: the trampoline's frame is hidden too.
  Value raiser = EvalRef("{}.popitem");
  Outcome o = CallFn(raiser, {});
  ASSERT_EQ(o.kind, Outcome::Kind::kException);
  const Value& vinegar = Tree(o.value);
  EXPECT_EQ(vinegar.as<brine::Tuple>().items[0], T({S("builtins"), S("KeyError")}));
  const std::string& tb = vinegar.as<brine::Tuple>().items[3].as<brine::Str>().utf8;
  EXPECT_EQ(tb.find("classicd-support"), std::string::npos) << tb;
}

TEST_F(ObjSpaceTest, CallAttrSetAttrDelAttr) {
  Execute("class C: pass\nc = C()");
  Value c = EvalRef("c");
  EXPECT_EQ(Reply(Handler::kSetAttr, Boxes({LocalRef(c), ByVal(S("v")), ByVal(I(9))})),
            ByVal(brine::NoneType{}));
  EXPECT_EQ(Eval("c.v"), ByVal(I(9)));
  EXPECT_EQ(Reply(Handler::kDelAttr, Boxes({LocalRef(c), ByVal(S("v"))})),
            ByVal(brine::NoneType{}));
  EXPECT_EQ(Eval("hasattr(c, 'v')"), ByVal(false));
  Value lst = EvalRef("[3, 1, 2]");
  Reply(Handler::kCallAttr, Boxes({LocalRef(lst), ByVal(S("sort")), ByVal(T({})),
                                   ByVal(T({T({S("reverse"), true})}))}));
  EXPECT_EQ(Reply(Handler::kRepr, Boxes({LocalRef(lst)})), ByVal(S("[3, 2, 1]")));
}

TEST_F(ObjSpaceTest, BuffIter) {
  Value it = EvalRef("iter(range(25))");
  Value a = Reply(Handler::kBuffIter, Boxes({LocalRef(it), ByVal(I(10))}));
  EXPECT_EQ(Payload(a).as<brine::Tuple>().items.size(), 10u);
  Value b = Reply(Handler::kBuffIter, Boxes({LocalRef(it), ByVal(I(20))}));
  EXPECT_EQ(Payload(b).as<brine::Tuple>().items.size(), 15u);
  EXPECT_EQ(Payload(b).as<brine::Tuple>().items[0], I(10));
  Value c = Reply(Handler::kBuffIter, Boxes({LocalRef(it), ByVal(I(40))}));
  EXPECT_EQ(c, ByVal(T({})));
}

TEST_F(ObjSpaceTest, IterationWithStopIteration) {
  Value gen = EvalRef("(x * x for x in range(2))");
  Value call = Boxes({LocalRef(gen), ByVal(S("__next__")), ByVal(T({})), ByVal(T({}))});
  EXPECT_EQ(Reply(Handler::kCallAttr, call), ByVal(I(0)));
  EXPECT_EQ(Reply(Handler::kCallAttr, call), ByVal(I(1)));
  EXPECT_EQ(Exc(Handler::kCallAttr, call), I(1));
}

TEST_F(ObjSpaceTest, OldSlicing) {
  Value lst = EvalRef("[0, 1, 2, 3]");
  Value r = Reply(Handler::kOldSlicing,
                  Boxes({LocalRef(lst), ByVal(S("__getitem__")), ByVal(S("__getslice__")),
                         ByVal(I(1)), ByVal(I(3)), ByVal(T({}))}));
  EXPECT_EQ(NamePack(r), "builtins.list");
  EXPECT_EQ(Reply(Handler::kRepr, Boxes({LocalRef(Idp(r))})), ByVal(S("[1, 2]")));
}

TEST_F(ObjSpaceTest, Pickle) {
  Value lst = EvalRef("[1, 2]");
  Value p = Reply(Handler::kPickle, Boxes({LocalRef(lst), ByVal(I(4))}));
  const std::string data(Payload(p).as<brine::Bytes>().view());
  ASSERT_GE(data.size(), 2u);
  EXPECT_EQ(data.substr(0, 2), std::string("\x80\x04", 2));
  Value f = EvalRef("__import__('pickle').loads");
  EXPECT_EQ(NamePack(Eval("[1, 2]")), "builtins.list");
  Outcome o = CallFn(f, {ByVal(brine::MakeBytes(data))});
  EXPECT_EQ(NamePack(o.value), "builtins.list");
}

TEST_F(ObjSpaceTest, InstanceCheck) {
  Value list_cls = EvalRef("list");
  Value inst = EvalRef("[1]");
  EXPECT_EQ(Reply(Handler::kInstanceCheck, Boxes({LocalRef(list_cls), ByVal(inst)})), ByVal(true));
  Value int_cls = EvalRef("int");
  EXPECT_EQ(Reply(Handler::kInstanceCheck, Boxes({LocalRef(int_cls), ByVal(inst)})), ByVal(false));
  // Not in the table: resolved by name.
  EXPECT_EQ(Reply(Handler::kInstanceCheck,
                  Boxes({LocalRef(int_cls), ByVal(T({S("builtins.bool"), I(1), I(2)}))})),
            ByVal(true));
  EXPECT_EQ(Reply(Handler::kInstanceCheck,
                  Boxes({LocalRef(int_cls), ByVal(T({S("nomod.Nope"), I(1), I(2)}))})),
            ByVal(false));
  EXPECT_TRUE(peer_.notes.empty());  // no spurious DEL
}

TEST_F(ObjSpaceTest, CtxExitWithoutException) {
  Execute(
      "class CM:\n"
      "  log = []\n"
      "  def __enter__(self): return self\n"
      "  def __exit__(self, t, v, tb):\n"
      "    CM.log.append((t, v, tb))\n"
      "    return True\n"
      "cm = CM()");
  Value cm = EvalRef("cm");
  Value r = Reply(Handler::kCtxExit, Boxes({LocalRef(cm), ByVal(brine::NoneType{})}));
  EXPECT_EQ(r, ByVal(true));
  EXPECT_EQ(Eval("CM.log"), Eval("CM.log"));
  EXPECT_EQ(Eval("CM.log == [(None, None, None)]"), ByVal(true));
}

}  // namespace
}  // namespace classicd::objspace::testing
