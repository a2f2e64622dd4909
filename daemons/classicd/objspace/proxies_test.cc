// Proxies for the client's objects and the requests they send (docs/protocol.md §8).

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

// --- requests to the client (§8) ---------------------------------------------------------------

// A client object id_pack.
Value ClientIdp(const std::string& name_pack, int64_t cls, int64_t inst) {
  return T({S(name_pack), I(cls), I(inst)});
}

TEST_F(ObjSpaceTest, CallbackWithKwargs) {
  Value fn = ClientIdp("builtins.function", 100, 200);
  peer_.script = [&](Handler h, const Value& args) -> core::Result<Outcome> {
    EXPECT_EQ(h, Handler::kCall);
    // (proxy as LOCAL_REF, args, kwargs pairs)
    EXPECT_EQ(args, Boxes({LocalRef(fn), ByVal(T({I(3)})), ByVal(T({T({S("k"), I(4)})}))}));
    return Outcome::Reply(ByVal(I(7)));
  };
  Value caller = EvalRef("lambda f: f(3, k=4) * 2");
  Outcome o = CallFn(caller, {RemoteRef(fn)});
  ASSERT_EQ(o.kind, Outcome::Kind::kReply) << o.value.Repr();
  EXPECT_EQ(o.value, ByVal(I(14)));
  EXPECT_EQ(peer_.calls.size(), 1u);  // builtin name_pack: no INSPECT
  // The proxy died with the call: one DEL with count 1.
  ASSERT_EQ(peer_.notes.size(), 1u);
  EXPECT_EQ(peer_.notes[0].h, Handler::kDel);
  EXPECT_EQ(peer_.notes[0].args, Boxes({LocalRef(fn), ByVal(I(1))}));
}

TEST_F(ObjSpaceTest, ProxyReceivedTwiceSendsAccumulatedDel) {
  Value obj = ClientIdp("builtins.list", 100, 300);
  Value pair = EvalRef("lambda a, b: a is b");
  Outcome o = CallFn(pair, {RemoteRef(obj), RemoteRef(obj)});
  EXPECT_EQ(o.value, ByVal(true));
  ASSERT_EQ(peer_.notes.size(), 1u);
  EXPECT_EQ(peer_.notes[0].args, Boxes({LocalRef(obj), ByVal(I(2))}));
}

TEST_F(ObjSpaceTest, KeptProxyIsNotReleasedUntilDropped) {
  Value obj = ClientIdp("builtins.list", 100, 301);
  Execute("kept = []");
  Value keep = EvalRef("kept.append");
  CallFn(keep, {RemoteRef(obj)});
  EXPECT_TRUE(peer_.notes.empty());
  Execute("kept.clear()");
  ASSERT_EQ(peer_.notes.size(), 1u);
  EXPECT_EQ(peer_.notes[0].args, Boxes({LocalRef(obj), ByVal(I(1))}));
}

// A tiny client: a list [10, 20, 30] and a function that doubles, as builtin name_packs.
class ClientModel {
 public:
  Value list = ClientIdp("builtins.list", 1, 11);
  Value iter = ClientIdp("builtins.list_iterator", 2, 12);
  Value fn = ClientIdp("builtins.function", 3, 13);
  size_t pos = 0;
  std::vector<int64_t> items = {10, 20, 30};

  core::Result<Outcome> Serve(Handler h, const Value& args) {
    const auto& a = args.as<brine::Tuple>().items[1].as<brine::Tuple>().items;
    Value target = a[0].as<brine::Tuple>().items[1];
    if (h == Handler::kCallAttr) {
      const std::string& name = a[1].as<brine::Tuple>().items[1].as<brine::Str>().utf8;
      if (target == list && name == "__iter__") return Outcome::Reply(RemoteRef(iter));
      if (target == list && name == "__len__") return Outcome::Reply(ByVal(I(3)));
      if (target == iter && name == "__next__") {
        if (pos < items.size()) return Outcome::Reply(ByVal(I(items[pos++])));
        return Outcome::Exception(I(1));
      }
      if (target == iter && name == "__length_hint__") {
        return Outcome::Reply(ByVal(I(static_cast<int64_t>(items.size() - pos))));
      }
    }
    if (h == Handler::kCall && target == fn) {
      const auto& call_args = a[1].as<brine::Tuple>().items[1].as<brine::Tuple>().items;
      return Outcome::Reply(ByVal(I(call_args[0].as<brine::Int>().small() * 2)));
    }
    return Outcome::Exception(
        T({T({S("builtins"), S("NotImplementedError")}), T({S("fake client")}),
           T({T({S("_remote_version"), S("6.0.1")})}), S("")}));
  }
};

TEST_F(ObjSpaceTest, BuiltinMapOverClientObjects) {
  ClientModel client;
  peer_.script = [&](Handler h, const Value& a) { return client.Serve(h, a); };
  Value fn = EvalRef("lambda f, xs: tuple(map(f, xs))");
  Outcome o = CallFn(fn, {RemoteRef(client.fn), RemoteRef(client.list)});
  ASSERT_EQ(o.kind, Outcome::Kind::kReply) << o.value.Repr();
  EXPECT_EQ(o.value, ByVal(T({I(20), I(40), I(60)})));
  // Every proxy was released: list, iterator, function.
  EXPECT_EQ(peer_.notes.size(), 3u);
}

TEST_F(ObjSpaceTest, SortedWithClientKey) {
  ClientModel client;
  client.items = {3, 1, 2};
  peer_.script = [&](Handler h, const Value& a) { return client.Serve(h, a); };
  Value fn = EvalRef("lambda xs, k: tuple(sorted(xs, key=k))");
  Outcome o = CallFn(fn, {RemoteRef(client.list), RemoteRef(client.fn)});
  ASSERT_EQ(o.kind, Outcome::Kind::kReply) << o.value.Repr();
  EXPECT_EQ(o.value, ByVal(T({I(1), I(2), I(3)})));
}

TEST_F(ObjSpaceTest, IsinstanceOfClientList) {
  ClientModel client;
  peer_.script = [&](Handler h, const Value& a) { return client.Serve(h, a); };
  Value fn = EvalRef("lambda xs: (isinstance(xs, list), type(xs) is list, len(xs))");
  Outcome o = CallFn(fn, {RemoteRef(client.list)});
  EXPECT_EQ(o.value, ByVal(T({true, false, I(3)})));
}

TEST_F(ObjSpaceTest, ClientExceptionBecomesRealException) {
  Value fn = ClientIdp("builtins.function", 100, 201);
  peer_.script = [&](Handler, const Value&) -> core::Result<Outcome> {
    return Outcome::Exception(T({T({S("builtins"), S("ValueError")}), T({S("bad")}),
                                 T({T({S("_remote_version"), S("6.0.1")})}),
                                 S("Traceback (most recent call last):\nclient side\n")}));
  };
  Execute(
      "def catch(f):\n"
      "  try:\n"
      "    f()\n"
      "  except ValueError as e:\n"
      "    return ('caught', e.args, isinstance(e, ValueError))\n");
  Outcome o = CallFn(EvalRef("catch"), {RemoteRef(fn)});
  ASSERT_EQ(o.kind, Outcome::Kind::kReply) << o.value.Repr();
  EXPECT_EQ(o.value, ByVal(T({S("caught"), T({S("bad")}), true})));
  // Uncaught, it travels back with both tracebacks.
  o = CallFn(EvalRef("lambda f: f()"), {RemoteRef(fn)});
  ASSERT_EQ(o.kind, Outcome::Kind::kException);
  const auto& v = o.value.tree()->as<brine::Tuple>().items;
  EXPECT_EQ(v[0], T({S("builtins"), S("ValueError")}));
  const std::string& tb = v[3].as<brine::Str>().utf8;
  EXPECT_NE(tb.find("========= Remote Traceback (1) =========\n"), std::string::npos) << tb;
  EXPECT_NE(tb.find("client side"), std::string::npos) << tb;
}

TEST_F(ObjSpaceTest, ClientCustomExceptionUnknownHere) {
  Value fn = ClientIdp("builtins.function", 100, 202);
  peer_.script = [&](Handler, const Value&) -> core::Result<Outcome> {
    return Outcome::Exception(T({T({S("client_only_mod"), S("Oops")}), T({S("x")}),
                                 T({T({S("_remote_version"), S("6.0.1")})}), S("tb")}));
  };
  Outcome o = CallFn(EvalRef("lambda f: (lambda: f())()"), {RemoteRef(fn)});
  ASSERT_EQ(o.kind, Outcome::Kind::kException);
  EXPECT_EQ(o.value.tree()->as<brine::Tuple>().items[0],
            T({S("classicd/client_only_mod"), S("client_only_mod.Oops")}));
}

TEST_F(ObjSpaceTest, ClientStopIterationEndsLoops) {
  ClientModel client;
  client.items = {};
  peer_.script = [&](Handler h, const Value& a) { return client.Serve(h, a); };
  Outcome o = CallFn(EvalRef("lambda xs: [x for x in xs]"), {RemoteRef(client.list)});
  ASSERT_EQ(o.kind, Outcome::Kind::kReply) << o.value.Repr();
  EXPECT_EQ(NamePack(o.value), "builtins.list");
}

TEST_F(ObjSpaceTest, ConnectionFailureRaisesInPython) {
  Value fn = ClientIdp("builtins.function", 100, 203);
  peer_.script = nullptr;  // Call fails with kClosed
  Outcome o = CallFn(EvalRef("lambda f: f()"), {RemoteRef(fn)});
  ASSERT_EQ(o.kind, Outcome::Kind::kException);
  EXPECT_EQ(o.value.tree()->as<brine::Tuple>().items[0], T({S("builtins"), S("EOFError")}));
}

TEST_F(ObjSpaceTest, NoReferenceLeaks) {
  // sys.getallocatedblocks() counts the interpreter's live allocations (0 under the malloc
  // allocator of sanitizer builds, where LSan covers leaks instead).
  Value fn = ClientIdp("builtins.function", 100, 207);
  peer_.script = [&](Handler, const Value&) -> core::Result<Outcome> {
    return Outcome::Reply(ByVal(T({I(1), S("x"), brine::MakeBytes("y")})));
  };
  Value eval = RootMethod("eval");
  Execute("import sys\nstuff = [1, 2]\ncall = lambda f, *a, **k: f(*a, **k)");
  Value stuff = EvalRef("stuff");
  Value call = EvalRef("call");
  // Collected first: exceptions make reference cycles, freed whenever the GC next runs.
  Value blocks = EvalRef("lambda: (__import__('gc').collect(), sys.getallocatedblocks())[1]");
  auto round = [&] {
    CallFn(eval, {ByVal(S("(1, 'a', b'b', 2.5, None, 10**30, frozenset({1}))"))});
    Value getter = Idp(GetAttr(stuff, "append"));
    Reply(Handler::kDel, Boxes({LocalRef(getter), ByVal(I(1))}));
    CallFn(eval, {ByVal(S("1/0"))});
    CallFn(eval, {ByVal(S("next(iter(()))"))});
    CallFn(call, {RemoteRef(fn), ByVal(I(1)), ByVal(S("z"))});
    Reply(Handler::kInspect, ByVal(T({stuff})));
    Reply(Handler::kRepr, Boxes({LocalRef(stuff)}));
  };
  for (int i = 0; i < 1000; ++i) round();  // caches and interned names settle
  auto count = [&] { return Payload(CallFn(blocks, {}).value).as<brine::Int>().small(); };
  size_t lent = space_->LocalObjectCount();
  int64_t before = count();
  for (int i = 0; i < 1000; ++i) round();
  int64_t after = count();
  EXPECT_LT(after - before, 100) << before << " -> " << after;
  EXPECT_EQ(space_->LocalObjectCount(), lent);
}

TEST_F(ObjSpaceTest, TimeoutRaisesTimeoutError) {
  Value fn = ClientIdp("builtins.function", 100, 208);
  peer_.script = [&](Handler, const Value&) -> core::Result<Outcome> {
    return core::Fail(core::Error::Limit("result expired"));  // what the engine reports
  };
  Execute(
      "def timed(f):\n"
      "  try:\n"
      "    f()\n"
      "  except TimeoutError as e:\n"
      "    return str(e)\n");
  Outcome o = CallFn(EvalRef("timed"), {RemoteRef(fn)});
  EXPECT_EQ(o.value, ByVal(S("result expired")));
}

TEST_F(ObjSpaceTest, NonBuiltinProxyIsInspected) {
  Value file = ClientIdp("_io.TextIOWrapper", 500, 600);
  Value write = ClientIdp("builtins.builtin_function_or_method", 501, 601);
  std::vector<std::string> written;
  peer_.script = [&](Handler h, const Value& args) -> core::Result<Outcome> {
    if (h == Handler::kInspect) {
      EXPECT_EQ(args, ByVal(T({file})));
      return Outcome::Reply(ByVal(T({T({S("write"), S("Write.")}), T({S("flush"), S("")})})));
    }
    const auto& a = args.as<brine::Tuple>().items[1].as<brine::Tuple>().items;
    if (h == Handler::kGetAttr) {
      EXPECT_EQ(a[1], ByVal(S("write")));
      return Outcome::Reply(RemoteRef(write));
    }
    if (h == Handler::kCall) {
      written.push_back(
          a[1].as<brine::Tuple>().items[1].as<brine::Tuple>().items[0].as<brine::Str>().utf8);
      return Outcome::Reply(ByVal(I(1)));
    }
    return core::Fail(core::Error::Protocol("unexpected"));
  };
  // redirected_stdio: sys.stdout = client file, set through SETATTR on the sys module.
  Value sys = Idp(CallFn(RootMethod("getmodule"), {ByVal(S("sys"))}).value);
  Execute("import sys; saved = sys.stdout");
  Outcome s = Run(Handler::kSetAttr, Boxes({LocalRef(sys), ByVal(S("stdout")), RemoteRef(file)}));
  ASSERT_EQ(s.kind, Outcome::Kind::kReply) << s.value.Repr();
  ASSERT_FALSE(peer_.calls.empty());
  EXPECT_EQ(peer_.calls[0].h, Handler::kInspect);
  Execute("print('hi')");
  Execute("sys.stdout = saved");
  EXPECT_EQ(written, (std::vector<std::string>{"hi", "\n"}));
}

TEST_F(ObjSpaceTest, CtxExitPassesTheRealException) {
  Value exc_cls = ClientIdp("builtins.ValueError", 700, 0);
  peer_.script = [&](Handler h, const Value&) -> core::Result<Outcome> {
    EXPECT_EQ(h, Handler::kInspect);
    return Outcome::Reply(ByVal(T({})));
  };
  Execute(
      "class CM:\n"
      "  log = []\n"
      "  def __exit__(self, t, v, tb):\n"
      "    CM.log.append((t, type(v), tb))\n"
      "    return False\n"
      "cm = CM()");
  Value cm = EvalRef("cm");
  Value r = Reply(Handler::kCtxExit, Boxes({LocalRef(cm), RemoteRef(exc_cls)}));
  EXPECT_EQ(r, ByVal(false));
  EXPECT_EQ(Eval("CM.log == [(ValueError, ValueError, None)]"), ByVal(true));
}

TEST_F(ObjSpaceTest, NestedRequestFromTheClientDuringACallback) {
  Value fn = ClientIdp("builtins.function", 100, 204);
  peer_.script = [&](Handler, const Value&) -> core::Result<Outcome> {
    // While the server waits, the client evaluates something on the server (nesting).
    Value root = Payload(HandleSent(*space_, Handler::kGetRoot, ByVal(T({}))).value);
    Value eval = Payload(
        HandleSent(*space_, Handler::kGetAttr, Boxes({LocalRef(root), ByVal(S("eval"))})).value);
    Outcome inner = HandleSent(*space_, Handler::kCall,
                               Boxes({LocalRef(eval), ByVal(T({S("40 + 2")})), ByVal(T({}))}));
    return Outcome::Reply(inner.value);
  };
  Outcome o = CallFn(EvalRef("lambda f: f() + 1"), {RemoteRef(fn)});
  EXPECT_EQ(o.value, ByVal(I(43)));
}

TEST_F(ObjSpaceTest, ProxyUsedAfterDisconnectRaises) {
  Value fn = ClientIdp("builtins.function", 100, 205);
  peer_.script = [&](Handler, const Value&) -> core::Result<Outcome> {
    return Outcome::Reply(ByVal(I(1)));
  };
  Execute("import sys\nkept = []");
  CallFn(EvalRef("kept.append"), {RemoteRef(fn)});
  ASSERT_TRUE(g_interp->RunString("import sys").has_value());
  space_->OnDisconnect();
  EXPECT_TRUE(peer_.notes.empty());  // no DELs after the end
}

TEST_F(ObjSpaceTest, DeeplyNestedValuesAreRefused) {
  Execute("def nest(n, leaf):\n  v = leaf\n  for _ in range(n): v = (v,)\n  return v");
  Value nest = EvalRef("nest");
  Outcome ok = CallFn(nest, {ByVal(I(200)), ByVal(I(1))});
  EXPECT_EQ(ok.kind, Outcome::Kind::kReply);
  Value eval = RootMethod("eval");
  size_t before = space_->LocalObjectCount();
  for (const char* leaf : {"1", "[1]"}) {
    Outcome o = CallFn(eval, {ByVal(S(std::string("nest(100000, ") + leaf + ")"))});
    ASSERT_EQ(o.kind, Outcome::Kind::kException) << leaf;
    EXPECT_EQ(o.value.tree()->as<brine::Tuple>().items[0], T({S("builtins"), S("RecursionError")}));
  }
  EXPECT_EQ(space_->LocalObjectCount(), before);  // the [1] leaf was rolled back
}

TEST_F(ObjSpaceTest, ProxyWorksFromAnotherThread) {
  Value fn = ClientIdp("builtins.function", 100, 206);
  peer_.script = [&](Handler, const Value&) -> core::Result<Outcome> {
    return Outcome::Reply(ByVal(I(7)));
  };
  Execute(
      "import threading\n"
      "def other_thread(f):\n"
      "  out = []\n"
      "  def run():\n"
      "    try:\n"
      "      out.append(f() * 6)\n"
      "    except Exception as e:\n"
      "      out.append(repr(e))\n"
      "  t = threading.Thread(target=run)\n"
      "  t.start()\n"
      "  t.join()\n"
      "  return out[0]\n");
  Outcome o = CallFn(EvalRef("other_thread"), {RemoteRef(fn)});
  ASSERT_EQ(o.kind, Outcome::Kind::kReply) << o.value.Repr();
  EXPECT_EQ(Payload(o.value), I(42)) << o.value.Repr();
  ASSERT_EQ(peer_.calls.size(), 1u);
  EXPECT_EQ(peer_.calls[0].h, Handler::kCall);
}

// The engine lets a thread that waits for its reply read and serve the client's requests: then
// Handle() runs on a thread Python made, with the GIL released by Request(). The thread's state
// is Python's (deleted when the thread ends) and must not be kept past it.
TEST_F(ObjSpaceTest, APythonThreadWaitingForAReplyServesTheClientsRequests) {
  Value fn = ClientIdp("builtins.function", 100, 208);
  Value eval = RootMethod("eval");
  peer_.script = [&](Handler, const Value&) -> core::Result<Outcome> {
    Outcome inner = HandleSent(*space_, Handler::kCall,
                               Boxes({LocalRef(eval), ByVal(T({S("6 * 7")})), ByVal(T({}))}));
    return inner;
  };
  Execute(
      "import threading\n"
      "def threads(f, n):\n"
      "  out = []\n"
      "  for _ in range(n):\n"
      "    t = threading.Thread(target=lambda: out.append(f()))\n"
      "    t.start()\n"
      "    t.join()\n"
      "  return sum(out)\n");
  Outcome o = CallFn(EvalRef("threads"), {RemoteRef(fn), ByVal(I(20))});
  ASSERT_EQ(o.kind, Outcome::Kind::kReply) << o.value.Repr();
  EXPECT_EQ(Payload(o.value), I(20 * 42)) << o.value.Repr();
  // The threads have ended; the interpreter still works from this one and from new threads.
  EXPECT_EQ(Payload(Eval("1 + 1")), I(2));
  o = CallFn(EvalRef("threads"), {RemoteRef(fn), ByVal(I(2))});
  EXPECT_EQ(Payload(o.value), I(84)) << o.value.Repr();
}

TEST_F(ObjSpaceTest, DisconnectWaitsForRequestsFromOtherThreads) {
  Value fn = ClientIdp("builtins.function", 100, 207);
  std::promise<void> entered;
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  std::atomic<bool> replied{false};
  peer_.script = [&](Handler, const Value&) -> core::Result<Outcome> {
    entered.set_value();
    released.wait();
    replied = true;
    return Outcome::Reply(ByVal(I(1)));
  };
  Execute(
      "import threading\n"
      "def start(f):\n"
      "  t = threading.Thread(target=lambda: f())\n"
      "  t.start()\n"
      "  return 0\n");
  Outcome o = CallFn(EvalRef("start"), {RemoteRef(fn)});
  ASSERT_EQ(o.kind, Outcome::Kind::kReply) << o.value.Repr();
  entered.get_future().wait();  // the thread waits for its reply, the GIL released
  std::thread releaser([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    release.set_value();
  });
  space_->OnDisconnect();  // must wait: the waiting thread still uses the space
  EXPECT_TRUE(replied.load());
  releaser.join();
  EXPECT_EQ(space_->LocalObjectCount(), 0u);
}

}  // namespace
}  // namespace classicd::objspace::testing
