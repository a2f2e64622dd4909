// The object space as a client drives it: the classic session (docs/protocol.md §7), connections on
// many threads, the stdio root, and the per-thread Python data that belongs to a connection.

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

// --- the classic session (§7.1) ----------------------------------------------------------------

TEST_F(ObjSpaceTest, GetRootGivesTheSlaveServiceIdPack) {
  Value root = Root();
  const auto& t = root.as<brine::Tuple>().items;
  ASSERT_EQ(t.size(), 3u);
  EXPECT_EQ(t[0], S("rpyc.core.service.SlaveService"));
  EXPECT_NE(t[1], I(0));
  EXPECT_NE(t[2], I(0));
  EXPECT_EQ(space_->LocalObjectCount(), 1u);
  EXPECT_EQ(Root(), root);  // same object, same id_pack
}

TEST_F(ObjSpaceTest, ClassicHandshakeSequence) {
  Value root = Root();
  Value methods = Reply(Handler::kInspect, ByVal(T({root})));
  EXPECT_EQ(Label(methods), I(1));
  Value getmodule = GetAttr(root, "getmodule");
  EXPECT_EQ(NamePack(getmodule), "builtins.method");
  Outcome b = CallFn(Idp(getmodule), {ByVal(S("builtins"))});
  ASSERT_EQ(b.kind, Outcome::Kind::kReply);
  EXPECT_EQ(NamePack(b.value), "builtins");
  Value mod_methods = Reply(Handler::kInspect, ByVal(T({Idp(b.value)})));
  EXPECT_EQ(Payload(mod_methods).as<brine::Tuple>().items.size(), 5u) << mod_methods.Repr();
  Outcome u = CallFn(Idp(getmodule), {ByVal(S("importlib.util"))});
  ASSERT_EQ(u.kind, Outcome::Kind::kReply);
  EXPECT_EQ(NamePack(u.value), "importlib.util");
  EXPECT_EQ(NamePack(GetAttr(root, "eval")), "builtins.method");
  EXPECT_EQ(NamePack(GetAttr(root, "execute")), "builtins.method");
  EXPECT_EQ(NamePack(GetAttr(root, "namespace")), "builtins.dict");
  EXPECT_TRUE(peer_.calls.empty());
}

TEST_F(ObjSpaceTest, InspectRootPerGeneration) {
  Value root = Root();
  auto names = [&] { return MethodNames(root); };
  std::vector<std::string> v6 = names();
  EXPECT_EQ(v6.size(), 17u);
  EXPECT_TRUE(Has(v6, "get_service_name"));
  EXPECT_TRUE(Has(v6, "exposed_get_service_aliases"));
  EXPECT_FALSE(Has(v6, "_protocol"));
  EXPECT_TRUE(Has(v6, "eval"));
  peer_.gen = Generation::kV5;
  std::vector<std::string> v5 = names();
  EXPECT_EQ(v5.size(), 14u);
  EXPECT_FALSE(Has(v5, "get_service_name"));
  EXPECT_TRUE(Has(v5, "_protocol"));
  EXPECT_FALSE(Has(v5, "__init__"));  // LOCAL_ATTRS are filtered
}

TEST_F(ObjSpaceTest, InspectFollowsClassChanges) {
  Execute("class Base:\n  def a(self): pass\nclass Sub(Base): pass\nx = Sub()");
  Value x = EvalRef("x");
  auto names = [&] { return MethodNames(x); };
  std::vector<std::string> before = names();
  EXPECT_TRUE(Has(before, "a"));
  EXPECT_FALSE(Has(before, "b"));
  EXPECT_EQ(names(), before);          // cached, same answer
  Execute("Base.b = lambda self: 1");  // a base class changes: the cached list is stale
  EXPECT_TRUE(Has(names(), "b"));
  Execute("del Base.a");
  EXPECT_FALSE(Has(names(), "a"));
}

TEST_F(ObjSpaceTest, ServiceNames) {
  for (const char* name : {"get_service_name", "exposed_get_service_name"}) {
    Outcome o = CallFn(RootMethod(name), {});
    ASSERT_EQ(o.kind, Outcome::Kind::kReply);
    EXPECT_EQ(o.value, ByVal(S("SLAVE")));
  }
  Outcome a = CallFn(RootMethod("get_service_aliases"), {});
  EXPECT_EQ(a.value, ByVal(T({S("SLAVE")})));
}

TEST_F(ObjSpaceTest, EvalExecuteAndNamespace) {
  Execute("x = 21");
  EXPECT_EQ(Eval("x * 2"), ByVal(I(42)));
  EXPECT_EQ(Eval("__name__"), ByVal(S("builtins")));
  Value ns = Idp(GetAttr(Root(), "namespace"));
  Value x = Reply(Handler::kCallAttr,
                  Boxes({LocalRef(ns), ByVal(S("__getitem__")), ByVal(T({S("x")})), ByVal(T({}))}));
  EXPECT_EQ(x, ByVal(I(21)));
  Execute("class O: pass\ndef f(): pass");
  EXPECT_EQ(NamePack(Eval("O")), "builtins.O");
  EXPECT_EQ(Payload(Eval("O")).as<brine::Tuple>().items[2], I(0));  // a class
  EXPECT_EQ(NamePack(Eval("O()")), "builtins.O");
  EXPECT_EQ(NamePack(Eval("f")), "builtins.function");
}

TEST_F(ObjSpaceTest, NamespacesArePerConnection) {
  Execute("x = 1");
  FakePeer other_peer;
  auto other = MakeClassicObjectSpace(*g_interp, other_peer);
  Value root = Payload(HandleSent(*other, Handler::kGetRoot, ByVal(T({}))).value);
  Value eval = Payload(
      HandleSent(*other, Handler::kGetAttr, Boxes({LocalRef(root), ByVal(S("eval"))})).value);
  Outcome o =
      HandleSent(*other, Handler::kCall, Boxes({LocalRef(eval), ByVal(T({S("x")})), ByVal(T({}))}));
  ASSERT_EQ(o.kind, Outcome::Kind::kException);
  EXPECT_EQ(o.value.tree()->as<brine::Tuple>().items[0], T({S("builtins"), S("NameError")}));
  // Modules are shared.
  Execute("import sys; sys._classicd_test_marker = 5");
  o = HandleSent(*other, Handler::kCall,
                 Boxes({LocalRef(eval), ByVal(T({S("__import__('sys')._classicd_test_marker")})),
                        ByVal(T({}))}));
  EXPECT_EQ(o.value, ByVal(I(5)));
  Execute("del sys._classicd_test_marker");
}

TEST_F(ObjSpaceTest, GetModuleByNameAndTuple) {
  Value getmodule = RootMethod("getmodule");
  Outcome o = CallFn(getmodule, {ByVal(S("os.path"))});
  EXPECT_EQ(NamePack(o.value), "posixpath");
  o = CallFn(getmodule, {ByVal(T({S("os"), S("path")}))});
  EXPECT_EQ(NamePack(o.value), "posixpath");
  o = CallFn(getmodule, {ByVal(S("no_such_module_xyz"))});
  ASSERT_EQ(o.kind, Outcome::Kind::kException);
  EXPECT_EQ(o.value.tree()->as<brine::Tuple>().items[0],
            T({S("builtins"), S("ModuleNotFoundError")}));
}

TEST_F(ObjSpaceTest, RootDeniesSetAttrAndDelAttr) {
  Value root = Root();
  Value e = Exc(Handler::kSetAttr, Boxes({LocalRef(root), ByVal(S("x")), ByVal(I(1))}));
  EXPECT_EQ(e.as<brine::Tuple>().items[0], T({S("builtins"), S("AttributeError")}));
  EXPECT_EQ(e.as<brine::Tuple>().items[1], T({S("access denied")}));
  e = Exc(Handler::kDelAttr, Boxes({LocalRef(root), ByVal(S("namespace"))}));
  EXPECT_EQ(e.as<brine::Tuple>().items[1], T({S("access denied")}));
}

TEST_F(ObjSpaceTest, AttributeNamesMustBeStrings) {
  Value root = Root();
  Value ok = Reply(Handler::kGetAttr, Boxes({LocalRef(root), ByVal(brine::MakeBytes("eval"))}));
  EXPECT_EQ(NamePack(ok), "builtins.method");
  Value e = Exc(Handler::kGetAttr, Boxes({LocalRef(root), ByVal(I(3))}));
  EXPECT_EQ(e.as<brine::Tuple>().items[1], T({S("name must be a string")}));
}

TEST(ConcurrencyTest, ManyConnectionThreads) {
  ASSERT_NE(g_interp, nullptr);
  constexpr int kThreads = 8;
  constexpr int kCalls = 200;
  std::vector<std::thread> threads;
  std::vector<int> ok(kThreads, 0);
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([t, &ok] {
      FakePeer peer;
      auto space = MakeClassicObjectSpace(*g_interp, peer);
      Value root = PayloadOf(HandleSent(*space, Handler::kGetRoot, ByVal(T({}))).value);
      Value exec = PayloadOf(
          HandleSent(*space, Handler::kGetAttr, Boxes({LocalRef(root), ByVal(S("execute"))}))
              .value);
      Value eval = PayloadOf(
          HandleSent(*space, Handler::kGetAttr, Boxes({LocalRef(root), ByVal(S("eval"))})).value);
      HandleSent(*space, Handler::kCall,
                 Boxes({LocalRef(exec), ByVal(T({S("me = " + std::to_string(t))})), ByVal(T({}))}));
      for (int i = 0; i < kCalls; ++i) {
        Outcome o = HandleSent(*space, Handler::kCall,
                               Boxes({LocalRef(eval),
                                      ByVal(T({
                                          S("me * 1000 + " + std::to_string(i)),
                                      })),
                                      ByVal(T({}))}));
        if (o.value == ByVal(I(t * 1000 + i))) ++ok[t];
      }
      space->OnDisconnect();
    });
  }
  for (auto& th : threads) th.join();
  for (int t = 0; t < kThreads; ++t) EXPECT_EQ(ok[t], kCalls) << t;
}

TEST(ClassicServiceTest, StdioRootIsClassicService) {
  ASSERT_NE(g_interp, nullptr);
  FakePeer peer;
  auto space = MakeClassicObjectSpace(*g_interp, peer, RootService::kClassic);
  Value root = PayloadOf(HandleSent(*space, Handler::kGetRoot, ByVal(T({}))).value);
  EXPECT_EQ(root.as<brine::Tuple>().items[0], S("rpyc.core.service.ClassicService"));
  Value name = PayloadOf(
      HandleSent(*space, Handler::kGetAttr, Boxes({LocalRef(root), ByVal(S("get_service_name"))}))
          .value);
  Outcome o =
      HandleSent(*space, Handler::kCall, Boxes({LocalRef(name), ByVal(T({})), ByVal(T({}))}));
  EXPECT_EQ(o.value, ByVal(S("CLASSIC")));
  // The reference's INSPECT list for a ClassicService, from python3-rpyc 5.3.0.
  EXPECT_TRUE(g_interp
                  ->RunString("import rpyc, rpyc.core.netref as n, _classicd_support as s\n"
                              "from rpyc.lib import get_methods\n"
                              "ref = sorted(k for k, _ in get_methods(n.LOCAL_ATTRS,\n"
                              "             rpyc.ClassicService()))\n"
                              "ours = sorted(k for k, _ in s.get_methods(s.make_root(True)[0],\n"
                              "              False))\n"
                              "assert ref == ours, (ref, ours)\n")
                  .has_value());
}

// --- what Python keeps per thread belongs to the connection (threading.local, contextvars) ---

constexpr const char* kThreadDataSetup =
    "(__import__('sys').__dict__.setdefault('_objperf_local', __import__('threading').local()),"
    " __import__('sys').__dict__.setdefault('_objperf_cv',"
    " __import__('contextvars').ContextVar('objperf_cv', default=None)))";
// (threading.local attribute, context variable, attribute of threading.current_thread())
constexpr const char* kThreadDataRead =
    "(getattr(__import__('sys')._objperf_local, 'who', None),"
    " __import__('sys')._objperf_cv.get(),"
    " getattr(__import__('threading').current_thread(), 'objperf_who', None))";
std::string ThreadDataWrite(const std::string& who) {
  return "(setattr(__import__('sys')._objperf_local, 'who', '" + who +
         "'), __import__('sys')._objperf_cv.set('" + who +
         "'), setattr(__import__('threading').current_thread(), 'objperf_who', '" + who + "'))";
}
Value Seen(const std::string& local, const std::string& cv, const std::string& thread) {
  auto v = [](const std::string& s) { return s.empty() ? Value(brine::NoneType{}) : S(s); };
  return ByVal(T({v(local), v(cv), v(thread)}));
}

TEST(ThreadDataTest, ThreadLocalDataDoesNotOutliveAConnectionOnAReusedThread) {
  ASSERT_NE(g_interp, nullptr);
  std::thread t([] {
    FakePeer pa, pb, pc;
    auto a = MakeClassicObjectSpace(*g_interp, pa);
    ASSERT_EQ(EvalOn(*a, kThreadDataSetup).kind, Outcome::Kind::kReply);
    EXPECT_EQ(EvalOn(*a, kThreadDataRead).value.Repr(), Seen("", "", "").Repr());
    ASSERT_EQ(EvalOn(*a, ThreadDataWrite("a")).kind, Outcome::Kind::kReply);
    EXPECT_EQ(EvalOn(*a, kThreadDataRead).value.Repr(), Seen("a", "a", "a").Repr());
    // Another connection served by the same thread meanwhile has its own threading.local data
    // and context (the Thread object is the OS thread's, as in the reference).
    auto b = MakeClassicObjectSpace(*g_interp, pb);
    EXPECT_EQ(EvalOn(*b, kThreadDataRead).value.Repr(), Seen("", "", "a").Repr());
    ASSERT_EQ(EvalOn(*b, ThreadDataWrite("b")).kind, Outcome::Kind::kReply);
    EXPECT_EQ(EvalOn(*a, kThreadDataRead).value.Repr(), Seen("a", "a", "b").Repr());
    a.reset();
    b.reset();
    // The thread's connections are over: the next one starts clean.
    auto c = MakeClassicObjectSpace(*g_interp, pc);
    EXPECT_EQ(EvalOn(*c, kThreadDataRead).value.Repr(), Seen("", "", "").Repr());
  });
  t.join();
}

TEST(ThreadDataTest, AConnectionKeepsItsDataAcrossServingThreads) {
  ASSERT_NE(g_interp, nullptr);
  FakePeer peer;
  auto space = MakeClassicObjectSpace(*g_interp, peer);  // made here, served by two workers
  std::thread([&] {
    ASSERT_EQ(EvalOn(*space, kThreadDataSetup).kind, Outcome::Kind::kReply);
    ASSERT_EQ(EvalOn(*space, ThreadDataWrite("w1")).kind, Outcome::Kind::kReply);
  }).join();
  std::thread([&] {
    Outcome o = EvalOn(*space, kThreadDataRead);
    ASSERT_EQ(o.kind, Outcome::Kind::kReply) << o.value.Repr();
    // (Not the Thread object: the second worker may reuse the first one's pthread id.)
    const Value payload = PayloadOf(o.value);
    const auto& seen = payload.as<brine::Tuple>().items;
    EXPECT_EQ(seen[0], S("w1"));
    EXPECT_EQ(seen[1], S("w1")) << o.value.Repr();
  }).join();
  space.reset();
}

}  // namespace
}  // namespace classicd::objspace::testing
