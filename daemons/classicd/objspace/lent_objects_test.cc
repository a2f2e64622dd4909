// id_packs (docs/protocol.md §4.2), the table of lent objects and DEL (§4.3).

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

#include "daemons/classicd/objspace/lent_objects.h"
#include "daemons/classicd/objspace/objspace.h"
#include "daemons/classicd/objspace/objspace_testing.h"
#include "daemons/classicd/objspace/py_ref.h"
#include "libcore/brine/brine.h"
#include "libcore/brine/value.h"
#include "libcore/protocol/consts.h"
#include "libcore/protocol/object_space.h"

namespace classicd::objspace::testing {
namespace {

// --- id_pack (§4.2) ----------------------------------------------------------------------------

TEST_F(ObjSpaceTest, IdPackRules) {
  Value cls = Idp(Eval("list"));
  const auto& c = cls.as<brine::Tuple>().items;
  EXPECT_EQ(c[0], S("builtins.list"));
  EXPECT_EQ(c[2], I(0));
  Value inst = Idp(Eval("[1]"));
  EXPECT_EQ(inst.as<brine::Tuple>().items[1], c[1]);  // class_id == id(type(x)) == id(C)
  EXPECT_NE(inst.as<brine::Tuple>().items[2], I(0));
  Execute("import types; m = types.ModuleType('notinsys')");
  EXPECT_EQ(NamePack(Eval("m")), "builtins.notinsys");
  EXPECT_EQ(NamePack(Eval("__import__('os')")), "os");
  Execute("class Outer:\n  class Inner: pass");
  EXPECT_EQ(NamePack(Eval("Outer.Inner")), "builtins.Inner");
  EXPECT_EQ(NamePack(Eval("[].append")), "builtins.builtin_function_or_method");
  EXPECT_EQ(NamePack(Eval("len")), "builtins.builtin_function_or_method");
  peer_.gen = Generation::kV5;  // 5.x looks at a builtin function's __name__ (read without getattr)
  EXPECT_EQ(NamePack(Eval("len")), "builtins.builtin_function_or_method");
  EXPECT_EQ(NamePack(Eval("__import__('os').getpid")), "builtins.builtin_function_or_method");
  peer_.gen = Generation::kV6;
  EXPECT_EQ(NamePack(Eval("range(3)")), "builtins.range");
  // An object may override __class__ (as mocks do): the name_pack follows it, the ids do not.
  Execute("class Liar:\n  @property\n  def __class__(self): return dict\nliar = Liar()");
  Value liar = Idp(Eval("liar"));
  EXPECT_EQ(liar.as<brine::Tuple>().items[0], S("builtins.dict"));
  EXPECT_EQ(liar.as<brine::Tuple>().items[1], Idp(Eval("Liar")).as<brine::Tuple>().items[1]);
}

TEST_F(ObjSpaceTest, ModuleTypeIdPackPerGeneration) {
  Value v6 = Idp(Eval("__import__('types').ModuleType"));
  EXPECT_EQ(v6.as<brine::Tuple>().items[0], S("builtins.module"));
  EXPECT_EQ(v6.as<brine::Tuple>().items[2], I(0));
  peer_.gen = Generation::kV5;
  Value v5 = Idp(Eval("__import__('types').ModuleType"));
  EXPECT_EQ(v5.as<brine::Tuple>().items[0], S("builtins.type"));
  EXPECT_NE(v5.as<brine::Tuple>().items[2], I(0));
  EXPECT_EQ(v5.as<brine::Tuple>().items[2], v6.as<brine::Tuple>().items[1]);
}

// --- refcounts and DEL (§4.3) ------------------------------------------------------------------

TEST_F(ObjSpaceTest, RefcountsAndDel) {
  EXPECT_EQ(space_->LocalObjectCount(), 0u);
  Value root = Root();
  Value ns1 = Idp(GetAttr(root, "namespace"));
  Value ns2 = Idp(GetAttr(root, "namespace"));
  EXPECT_EQ(ns1, ns2);
  EXPECT_EQ(space_->LocalObjectCount(), 2u);
  Value del1 = Boxes({LocalRef(ns1), ByVal(I(1))});
  EXPECT_EQ(Reply(Handler::kDel, del1), ByVal(brine::NoneType{}));
  EXPECT_EQ(space_->LocalObjectCount(), 2u);  // sent twice, released once
  EXPECT_EQ(Reply(Handler::kDel, del1), ByVal(brine::NoneType{}));
  EXPECT_EQ(space_->LocalObjectCount(), 1u);
  // Unknown now.
  Value e = Exc(Handler::kDel, del1);
  EXPECT_EQ(e.as<brine::Tuple>().items[0], T({S("builtins"), S("KeyError")}));
  e = Exc(Handler::kGetAttr, Boxes({LocalRef(ns1), ByVal(S("keys"))}));
  EXPECT_EQ(e.as<brine::Tuple>().items[0], T({S("builtins"), S("KeyError")}));
  // Count 2 at once; a missing count means 1.
  GetAttr(root, "namespace");
  GetAttr(root, "namespace");
  EXPECT_EQ(Reply(Handler::kDel, Boxes({LocalRef(ns1), ByVal(I(2))})), ByVal(brine::NoneType{}));
  EXPECT_EQ(space_->LocalObjectCount(), 1u);
  Reply(Handler::kDel, Boxes({LocalRef(root)}));
  EXPECT_EQ(space_->LocalObjectCount(), 0u);
}

TEST_F(ObjSpaceTest, DelCountsThatAreNotSmallInts) {
  Value root = Root();
  Value ns = Idp(GetAttr(root, "namespace"));
  GetAttr(root, "namespace");
  // A count that is no small int takes the unboxing path, and fails as Python's int() would.
  Value e = Exc(Handler::kDel, Boxes({LocalRef(ns), ByVal(S("2"))}));
  EXPECT_EQ(e.as<brine::Tuple>().items[0], T({S("builtins"), S("TypeError")}));
  EXPECT_EQ(space_->LocalObjectCount(), 2u);  // nothing released
  EXPECT_EQ(Reply(Handler::kDel, Boxes({LocalRef(ns), ByVal(true)})), ByVal(brine::NoneType{}));
  EXPECT_EQ(space_->LocalObjectCount(), 2u);  // True counts 1: one of two references left
  EXPECT_EQ(Reply(Handler::kDel, Boxes({LocalRef(ns), ByVal(I(1))})), ByVal(brine::NoneType{}));
  EXPECT_EQ(space_->LocalObjectCount(), 1u);
}

TEST_F(ObjSpaceTest, LentTableFindsAndReleasesByView) {
  GilHold gil;
  LentObjects table;
  PyRef obj = PyRef::Steal(PyList_New(0));
  const IdKey key{"builtins.builtin_function_or_method", 1, 2};  // longer than a short string
  table.Lend(obj.get(), key);
  table.Lend(obj.get(), key);
  const std::string name = key.name;  // a view of another buffer finds the same entry
  EXPECT_EQ(table.Find(IdKeyView(IdKey{name, 1, 2})), obj.get());
  IdKeyView view;
  view.name = name;
  view.class_id = 1;
  view.instance_id = 2;
  EXPECT_EQ(table.Find(view), obj.get());
  view.instance_id = 3;
  EXPECT_EQ(table.Find(view), nullptr);
  EXPECT_FALSE(table.Release(view, 1));
  view.instance_id = 2;
  EXPECT_TRUE(table.Release(view, 1));
  EXPECT_EQ(table.size(), 1u);
  EXPECT_TRUE(table.Release(view, 1));
  EXPECT_EQ(table.size(), 0u);
  EXPECT_EQ(table.Find(view), nullptr);
}

TEST_F(ObjSpaceTest, DelReleasesTheObject) {
  Execute("import weakref\nclass K: pass\nk = K()\nw = weakref.ref(k)");
  Value k = EvalRef("k");
  Execute("del k");
  EXPECT_EQ(Eval("w() is None"), ByVal(false));
  Reply(Handler::kDel, Boxes({LocalRef(k), ByVal(I(1))}));
  EXPECT_EQ(Eval("w() is None"), ByVal(true));
}

TEST_F(ObjSpaceTest, OnDisconnectReleasesEverything) {
  Execute("import weakref\nclass K: pass\nk = K()\nw = weakref.ref(k)");
  EvalRef("k");
  Value w = EvalRef("w");
  Execute("del k");
  EXPECT_GT(space_->LocalObjectCount(), 2u);
  space_->OnDisconnect();
  EXPECT_EQ(space_->LocalObjectCount(), 0u);
  space_->OnDisconnect();  // idempotent
}

TEST_F(ObjSpaceTest, BadLabelsAndRefs) {
  Value e = Exc(Handler::kGetAttr, T({I(9), T({})}));
  EXPECT_EQ(e.as<brine::Tuple>().items[0], T({S("builtins"), S("ValueError")}));
  e = Exc(Handler::kGetAttr, Boxes({LocalRef(T({S("x.y"), I(1), I(2)})), ByVal(S("a"))}));
  EXPECT_EQ(e.as<brine::Tuple>().items[0], T({S("builtins"), S("KeyError")}));
  e = Exc(Handler::kInspect, ByVal(T({T({S("x.y"), I(1), I(2)})})));
  EXPECT_EQ(e.as<brine::Tuple>().items[0], T({S("builtins"), S("KeyError")}));
  e = Exc(Handler::kGetAttr, ByVal(T({I(1)})));
  EXPECT_EQ(e.as<brine::Tuple>().items[0], T({S("builtins"), S("TypeError")}));
  e = Exc(Handler::kPing, I(5));
  EXPECT_EQ(e.as<brine::Tuple>().items[0], T({S("builtins"), S("ValueError")}));
}

}  // namespace
}  // namespace classicd::objspace::testing
