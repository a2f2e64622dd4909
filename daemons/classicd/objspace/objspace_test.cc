// Drives the classic object space directly, with an in-memory fake peer whose replies the tests
// script (PROTOCOL.md §4-§8). Compatibility with the real clients is proven by the e2e tests.

#include "daemons/classicd/objspace/objspace.h"
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

#include "libcore/brine/brine.h"
#include "libcore/brine/value.h"
#include "libcore/protocol/consts.h"
#include "libcore/protocol/object_space.h"

namespace classicd::objspace {
namespace {

namespace brine = core::brine;
using brine::Value;
using core::protocol::Generation;
using core::protocol::Handler;
using core::protocol::ObjectSpace;
using core::protocol::Outcome;

Interpreter* g_interp = nullptr;

class InterpreterEnv : public ::testing::Environment {
 public:
  void SetUp() override {
    InterpreterOptions options;
    options.extra_sys_path = {"/nonexistent/classicd-extra"};
    setenv("PYTHONPATH", "/nonexistent/classicd-pp1:/nonexistent/classicd-pp2", 1);
    auto interp = Interpreter::Start(options);
    ASSERT_TRUE(interp.has_value()) << interp.error().ToString();
    interp_ = std::move(*interp);
    g_interp = interp_.get();
  }
  void TearDown() override {
    g_interp = nullptr;
    interp_.reset();
  }
  // For a forked child: finalise there.
  void Finalize() { TearDown(); }

 private:
  std::unique_ptr<Interpreter> interp_;
};

InterpreterEnv* const kEnv =
    static_cast<InterpreterEnv*>(::testing::AddGlobalTestEnvironment(new InterpreterEnv));

// --- brine shorthands ---
Value T(std::vector<Value> items) { return brine::MakeTuple(std::move(items)); }
Value S(const std::string& s) { return brine::MakeStr(s); }
Value I(int64_t i) { return brine::Int(i); }
Value ByVal(Value v) { return T({I(1), std::move(v)}); }
Value LocalRef(Value idp) { return T({I(3), std::move(idp)}); }
Value RemoteRef(Value idp) { return T({I(4), std::move(idp)}); }
Value Boxes(std::vector<Value> boxed) { return T({I(2), T(std::move(boxed))}); }
Value PayloadOf(const Value& boxed) { return boxed.as<brine::Tuple>().items[1]; }
// The same of an outcome from HandleSent() (whose value is a tree).
Value PayloadOf(const Outcome& o) { return PayloadOf(*o.value.tree()); }

// Handle(), with a reply that was made as brine bytes given back in `value` as the tree those
// bytes carry (what the client receives), so that `value.tree()` is never null.
Outcome HandleSent(ObjectSpace& space, Handler h, const Value& boxed) {
  Outcome o = space.Handle(h, boxed);
  if (o.value.tree() == nullptr) {
    auto v = o.value.Decoded();
    EXPECT_TRUE(v.has_value()) << v.error().ToString();
    o.value = v ? std::move(*v) : Value();
  }
  return o;
}

struct PeerCall {
  Handler h;
  Value args;
};

class FakePeer : public core::protocol::Peer {
 public:
  using Script = std::function<core::Result<Outcome>(Handler, const Value&)>;
  core::Result<Outcome> Call(Handler h, Value boxed_args, int) override {
    calls.push_back({h, boxed_args});
    if (!script) return core::Fail(core::Error::Closed("no script"));
    return script(h, boxed_args);
  }
  core::Status Notify(Handler h, Value boxed_args) override {
    notes.push_back({h, std::move(boxed_args)});
    return {};
  }
  Generation generation() const override { return gen; }

  Generation gen = Generation::kV6;
  Script script;
  std::vector<PeerCall> calls;
  std::vector<PeerCall> notes;
};

class ObjSpaceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_NE(g_interp, nullptr);
    space_ = MakeClassicObjectSpace(*g_interp, peer_);
  }
  void TearDown() override { space_.reset(); }

  Outcome Run(Handler h, const Value& boxed) { return HandleSent(*space_, h, boxed); }

  // The boxed reply (decoded when the object space sent it encoded); fails the test on an
  // exception.
  Value Reply(Handler h, const Value& boxed) {
    Outcome o = Run(h, boxed);
    EXPECT_EQ(o.kind, Outcome::Kind::kReply) << o.value.Repr();
    return *o.value.tree();
  }
  // The exception value; fails the test on a reply.
  Value Exc(Handler h, const Value& boxed) {
    Outcome o = Run(h, boxed);
    EXPECT_EQ(o.kind, Outcome::Kind::kException) << o.value.Repr();
    return *o.value.tree();
  }

  static const Value& Label(const Value& boxed) { return boxed.as<brine::Tuple>().items[0]; }
  static const Value& Payload(const Value& boxed) { return boxed.as<brine::Tuple>().items[1]; }
  static const Value& Payload(const Outcome& o) { return Payload(*o.value.tree()); }
  static std::string NamePack(const Value& boxed) {
    return Payload(boxed).as<brine::Tuple>().items[0].as<brine::Str>().utf8;
  }
  // id_pack of a REMOTE_REF reply.
  static Value Idp(const Value& boxed) {
    EXPECT_EQ(Label(boxed), I(4)) << boxed.Repr();
    return Payload(boxed);
  }
  static Value Idp(const Outcome& o) { return Idp(*o.value.tree()); }

  Value Root() { return Idp(Reply(Handler::kGetRoot, ByVal(T({})))); }
  Value GetAttr(const Value& idp, const std::string& name) {
    return Reply(Handler::kGetAttr, Boxes({LocalRef(idp), ByVal(S(name))}));
  }
  Value RootMethod(const std::string& name) { return Idp(GetAttr(Root(), name)); }
  Outcome CallFn(const Value& fn_idp, std::vector<Value> boxed_args) {
    return Run(Handler::kCall,
               Boxes({LocalRef(fn_idp), Boxes(std::move(boxed_args)), ByVal(T({}))}));
  }
  Value Eval(const std::string& code) {
    Outcome o = CallFn(RootMethod("eval"), {ByVal(S(code))});
    EXPECT_EQ(o.kind, Outcome::Kind::kReply) << code << ": " << o.value.Repr();
    return *o.value.tree();
  }
  Outcome EvalOutcome(const std::string& code) {
    return CallFn(RootMethod("eval"), {ByVal(S(code))});
  }
  void Execute(const std::string& code) {
    Outcome o = CallFn(RootMethod("execute"), {ByVal(S(code))});
    EXPECT_EQ(o.kind, Outcome::Kind::kReply) << code << ": " << o.value.Repr();
  }
  // The names in INSPECT's reply for a lent object.
  std::vector<std::string> MethodNames(const Value& idp) {
    Value m = Reply(Handler::kInspect, ByVal(T({idp})));
    std::vector<std::string> out;
    for (const auto& pair : Payload(m).as<brine::Tuple>().items) {
      out.push_back(pair.as<brine::Tuple>().items[0].as<brine::Str>().utf8);
    }
    return out;
  }
  static bool Has(const std::vector<std::string>& v, const std::string& n) {
    return std::find(v.begin(), v.end(), n) != v.end();
  }
  // Evaluates `code`, expecting an object reference; returns its id_pack.
  Value EvalRef(const std::string& code) { return Idp(Eval(code)); }

  FakePeer peer_;
  std::unique_ptr<ObjectSpace> space_;
};

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
  EXPECT_EQ(NamePack(*b.value.tree()), "builtins");
  Value mod_methods = Reply(Handler::kInspect, ByVal(T({Idp(*b.value.tree())})));
  EXPECT_EQ(Payload(mod_methods).as<brine::Tuple>().items.size(), 5u) << mod_methods.Repr();
  Outcome u = CallFn(Idp(getmodule), {ByVal(S("importlib.util"))});
  ASSERT_EQ(u.kind, Outcome::Kind::kReply);
  EXPECT_EQ(NamePack(*u.value.tree()), "importlib.util");
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
  Value root = Payload(*HandleSent(*other, Handler::kGetRoot, ByVal(T({}))).value.tree());
  Value eval =
      Payload(*HandleSent(*other, Handler::kGetAttr, Boxes({LocalRef(root), ByVal(S("eval"))}))
                   .value.tree());
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
  EXPECT_EQ(NamePack(*o.value.tree()), "posixpath");
  o = CallFn(getmodule, {ByVal(T({S("os"), S("path")}))});
  EXPECT_EQ(NamePack(*o.value.tree()), "posixpath");
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
  EXPECT_EQ(NamePack(*c.value.tree()), "rpyc.core.protocol.Connection");
  Value tb = GetAttr(Idp(*c.value.tree()), "_last_traceback");
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
  const auto& r = Payload(*o.value.tree()).as<brine::Tuple>().items;
  EXPECT_EQ(r[0], I(889));  // Python's modulo of a negative number
  EXPECT_EQ(r[1], brine::Value(true));
  // And back unchanged.
  Value echo = Reply(Handler::kPing, ByVal(T({*in})));
  EXPECT_EQ(Payload(echo).as<brine::Int>().ToDecimal(), digits);
}

TEST_F(ObjSpaceTest, LargeBytesAndTuples) {
  Value b = Eval("b'x' * (4 << 20)");
  EXPECT_EQ(Payload(b).as<brine::Bytes>().data.size(), 4u << 20);
  Value t = Eval("tuple(range(10000))");
  EXPECT_EQ(Payload(t).as<brine::Tuple>().items.size(), 10000u);
  std::string big(1 << 20, 'y');
  Value echo = Reply(Handler::kPing, ByVal(T({brine::MakeBytes(big)})));
  EXPECT_EQ(Payload(echo).as<brine::Bytes>().data, big);
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
  const std::string& data = Payload(p).as<brine::Bytes>().data;
  ASSERT_GE(data.size(), 2u);
  EXPECT_EQ(data.substr(0, 2), std::string("\x80\x04", 2));
  Value f = EvalRef("__import__('pickle').loads");
  EXPECT_EQ(NamePack(Eval("[1, 2]")), "builtins.list");
  Outcome o = CallFn(f, {ByVal(brine::MakeBytes(data))});
  EXPECT_EQ(NamePack(*o.value.tree()), "builtins.list");
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
  EXPECT_EQ(NamePack(*o.value.tree()), "builtins.list");
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
  auto count = [&] { return Payload(CallFn(blocks, {})).as<brine::Int>().small(); };
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
  Value sys = Idp(CallFn(RootMethod("getmodule"), {ByVal(S("sys"))}));
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
    Value root = Payload(HandleSent(*space_, Handler::kGetRoot, ByVal(T({}))));
    Value eval =
        Payload(HandleSent(*space_, Handler::kGetAttr, Boxes({LocalRef(root), ByVal(S("eval"))})));
    Outcome inner = HandleSent(*space_, Handler::kCall,
                               Boxes({LocalRef(eval), ByVal(T({S("40 + 2")})), ByVal(T({}))}));
    return Outcome::Reply(*inner.value.tree());
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
  EXPECT_EQ(Payload(*o.value.tree()), I(42)) << o.value.Repr();
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
  EXPECT_EQ(Payload(*o.value.tree()), I(20 * 42)) << o.value.Repr();
  // The threads have ended; the interpreter still works from this one and from new threads.
  EXPECT_EQ(Payload(Eval("1 + 1")), I(2));
  o = CallFn(EvalRef("threads"), {RemoteRef(fn), ByVal(I(2))});
  EXPECT_EQ(Payload(*o.value.tree()), I(84)) << o.value.Repr();
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
      Value root = PayloadOf(HandleSent(*space, Handler::kGetRoot, ByVal(T({}))));
      Value exec = PayloadOf(
          HandleSent(*space, Handler::kGetAttr, Boxes({LocalRef(root), ByVal(S("execute"))})));
      Value eval = PayloadOf(
          HandleSent(*space, Handler::kGetAttr, Boxes({LocalRef(root), ByVal(S("eval"))})));
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
  Value root = PayloadOf(HandleSent(*space, Handler::kGetRoot, ByVal(T({}))));
  EXPECT_EQ(root.as<brine::Tuple>().items[0], S("rpyc.core.service.ClassicService"));
  Value name = PayloadOf(
      HandleSent(*space, Handler::kGetAttr, Boxes({LocalRef(root), ByVal(S("get_service_name"))})));
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

TEST(InterpreterTest, InspectListsMatchTheReferenceLibrary) {
  ASSERT_NE(g_interp, nullptr);
  // python3-rpyc 5.3.0 is importable by the embedded interpreter; compare with its get_methods.
  auto st = g_interp->RunString(
      "import sys, rpyc, rpyc.core.netref as n, _classicd_support as s\n"
      "from rpyc.lib import get_methods\n"
      "ref = sorted(k for k, _ in get_methods(n.LOCAL_ATTRS, rpyc.SlaveService()))\n"
      "root, _ = s.make_root()\n"
      "ours = sorted(k for k, _ in s.get_methods(root, False))\n"
      "assert ref == ours, (ref, ours)\n"
      "for obj in (sys, [], int, ValueError('x'), s.make_root):\n"
      "  ref = sorted(get_methods(n.LOCAL_ATTRS, obj))\n"
      "  ours = sorted(s.get_methods(obj, False))\n"
      "  assert ref == ours, (obj, ref, ours)\n");
  EXPECT_TRUE(st.has_value()) << st.error().message();
}

TEST(InterpreterTest, UserThreadsDoNotBlockShutdown) {
  ASSERT_NE(g_interp, nullptr);
  // A thread without daemon=True that never ends: finalisation must still return (the
  // environment's TearDown destroys the interpreter after all tests; ctest's timeout catches a
  // hang).
  EXPECT_TRUE(g_interp
                  ->RunString("import threading, time\n"
                              "threading.Thread(target=time.sleep, args=(3600,)).start()\n")
                  .has_value());
}

TEST(InterpreterTest, InspectListsMatchTheRpyc6Library) {
  ASSERT_NE(g_interp, nullptr);
  const char* env = std::getenv("RPYC6_PATH");
  std::string path =
      env != nullptr ? env : std::string(RPYC_SOURCE_DIR) + "/../shared/clients/rpyc6";
  if (!std::filesystem::exists(path + "/rpyc/__init__.py")) {
    GTEST_SKIP() << "rpyc 6.x library not found at " << path << " (set RPYC6_PATH)";
  }
  // The same objects go through 6.x's get_methods in a child /usr/bin/python3, and ours here.
  std::string code = R"py(
import subprocess, _classicd_support as s
common = """
import sys
class K:
    @classmethod
    def c(cls): pass
    @staticmethod
    def st(): pass
    class Nested: pass
    def m(self): pass
"""
probe = common + """
import rpyc, rpyc.core.netref as n
from rpyc.lib import get_methods
objs = [rpyc.SlaveService(), sys, [], int, K(), K]
print(repr([sorted(k for k, _ in get_methods(n.LOCAL_ATTRS, o)) for o in objs]))
"""
out = subprocess.run(['/usr/bin/python3', '-c', probe], capture_output=True, text=True,
                     env={'PYTHONPATH': PATH}, check=True).stdout
ref = eval(out)
ns = {}
exec(common, ns)
objs = [s.make_root()[0], ns['sys'], [], int, ns['K'](), ns['K']]
ours = [sorted(k for k, _ in s.get_methods(o, True)) for o in objs]
assert ref == ours, (ref, ours)
)py";
  auto st = g_interp->RunString("PATH = '" + path + "'\n" + code);
  EXPECT_TRUE(st.has_value()) << st.error().message();
}

// Waits for a forked child for up to `seconds`, killing it if it hangs: its wait status, or -1.
int WaitChild(pid_t pid, int seconds) {
  int status = 0;
  for (int i = 0; i < seconds * 20; ++i) {
    const pid_t r = waitpid(pid, &status, WNOHANG);
    if (r == pid) return status;
    if (r < 0) return -1;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  kill(pid, SIGKILL);
  waitpid(pid, &status, 0);
  return -1;
}

TEST(InterpreterTest, ForkedChildServesAndFinalises) {
  ASSERT_NE(g_interp, nullptr);
  auto pid = g_interp->Fork();
  ASSERT_TRUE(pid.has_value()) << pid.error().ToString();
  if (*pid == 0) {
    // Child: this thread is Python's main thread and serves a connection.
    bool ok = g_interp
                  ->RunString(
                      "import threading\n"
                      "assert threading.main_thread() is threading.current_thread()\n"
                      "assert len(threading.enumerate()) == 1\n")
                  .has_value();
    FakePeer peer;
    auto space = MakeClassicObjectSpace(*g_interp, peer);
    Value root = PayloadOf(HandleSent(*space, Handler::kGetRoot, ByVal(T({}))));
    Value eval =
        PayloadOf(HandleSent(*space, Handler::kGetAttr, Boxes({LocalRef(root), ByVal(S("eval"))})));
    Outcome o = HandleSent(*space, Handler::kCall,
                           Boxes({LocalRef(eval), ByVal(T({S("6 * 7")})), ByVal(T({}))}));
    ok = ok && o.value == ByVal(I(42));
    space.reset();
    kEnv->Finalize();
    _exit(ok ? 0 : 3);
  }
  const int status = WaitChild(*pid, 10);
  ASSERT_NE(status, -1) << "the child hung";
  ASSERT_TRUE(WIFEXITED(status)) << status;
  EXPECT_EQ(WEXITSTATUS(status), 0);
  // The parent goes on.
  EXPECT_TRUE(g_interp->RunString("assert 6 * 7 == 42").has_value());
}

// --- what Python keeps per thread belongs to the connection (threading.local, contextvars) ---

// A connection's eval, as a client would send it: GETROOT, GETATTR eval, CALL.
Outcome EvalOn(ObjectSpace& space, const std::string& code) {
  Value root = PayloadOf(HandleSent(space, Handler::kGetRoot, ByVal(T({}))));
  Value eval =
      PayloadOf(HandleSent(space, Handler::kGetAttr, Boxes({LocalRef(root), ByVal(S("eval"))})));
  return HandleSent(space, Handler::kCall,
                    Boxes({LocalRef(eval), ByVal(T({S(code)})), ByVal(T({}))}));
}

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
    const Value payload = PayloadOf(*o.value.tree());
    const auto& seen = payload.as<brine::Tuple>().items;
    EXPECT_EQ(seen[0], S("w1"));
    EXPECT_EQ(seen[1], S("w1")) << o.value.Repr();
  }).join();
  space.reset();
}

TEST(InterpreterTest, PrepareForkThenChildServesAndExits) {
  ASSERT_NE(g_interp, nullptr);
  // In a child of the test process, so that the GC freeze stays there.
  auto pid = g_interp->Fork();
  ASSERT_TRUE(pid.has_value()) << pid.error().ToString();
  if (*pid == 0) {
    bool ok = g_interp->PrepareFork().has_value();
    if (!InterpreterOptions::kSanitizerBuild) {
      // The holes of pymalloc's partly used pools are plugged: a new block of every size class
      // comes from a fresh 16 KiB pool (just after its 48-byte header), as it will in a child
      // (checked before any Python runs again: freeing old objects makes new holes).
      for (size_t size = 16; size <= 512; size += 16) {
        void* p = PyObject_Malloc(size);  // the GIL stays with this thread after PrepareFork
        if ((reinterpret_cast<uintptr_t>(p) & ((uintptr_t{1} << 14) - 1)) != 48) _exit(20);
        PyObject_Free(p);
      }
      // And glibc's free lists: a small chunk comes from the top of the heap.
      void* h = malloc(16);  // NOLINT(cppcoreguidelines-no-malloc)
      const auto* top = static_cast<const char*>(sbrk(0)) - mallinfo2().keepcost;
      if (static_cast<const char*>(h) < top - 64) _exit(21);
      free(h);  // NOLINT(cppcoreguidelines-no-malloc)
    }
    ok = ok && g_interp->RunString("import gc\nassert gc.get_freeze_count() > 0\n").has_value();
    auto grandchild = g_interp->Fork();
    if (!grandchild) _exit(4);
    if (*grandchild == 0) {
      // The parent kept the GIL since PrepareFork(); the child must not: a thread that client
      // code starts runs while the serving thread waits outside Python.
      if (!g_interp
               ->RunString("import threading, time\n"
                           "import builtins\n"
                           "builtins._classicd_box = []\n"
                           "threading.Thread(target=lambda: (time.sleep(0.05),\n"
                           "    builtins._classicd_box.append(1))).start()\n")
               .has_value()) {
        g_interp->ExitChild(9);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(500));
      if (!g_interp->RunString("import builtins\nassert builtins._classicd_box == [1]\n")
               .has_value()) {
        g_interp->ExitChild(10);
      }
      FakePeer peer;
      peer.gen = Generation::kV5;
      auto space = MakeClassicObjectSpace(*g_interp, peer);
      bool served = EvalOn(*space, "6 * 7").value == ByVal(I(42));
      space.reset();
      g_interp->ExitChild(served ? 7 : 8);
    }
    int status = 0;
    ok = ok && waitpid(*grandchild, &status, 0) == *grandchild && WIFEXITED(status) &&
         WEXITSTATUS(status) == 7;
    _exit(ok ? 0 : 3);
  }
  const int status = WaitChild(*pid, 20);
  ASSERT_NE(status, -1) << "the child hung";
  ASSERT_TRUE(WIFEXITED(status)) << status;
  EXPECT_EQ(WEXITSTATUS(status), 0);
}

TEST(InterpreterTest, RunStringReportsErrors) {
  ASSERT_NE(g_interp, nullptr);
  EXPECT_TRUE(g_interp->RunString("x = 1").has_value());
  auto st = g_interp->RunString("raise ValueError('nope')");
  ASSERT_FALSE(st.has_value());
  EXPECT_NE(st.error().message().find("ValueError: nope"), std::string::npos);
}

TEST(InterpreterTest, Configuration) {
  ASSERT_NE(g_interp, nullptr);
  EXPECT_TRUE(g_interp
                  ->RunString("import sys, signal\n"
                              "assert sys.executable == '/usr/bin/python3', sys.executable\n"
                              "assert sys.flags.utf8_mode == 1\n"
                              "assert signal.getsignal(signal.SIGINT) == signal.SIG_DFL\n"
                              "assert signal.getsignal(signal.SIGPIPE) == signal.SIG_IGN\n"
                              "assert sys.path[:3] == ['/nonexistent/classicd-extra',\n"
                              "    '/nonexistent/classicd-pp1', '/nonexistent/classicd-pp2']\n"
                              "assert any(p.endswith('dist-packages') for p in sys.path)\n"
                              "import rpyc\n")
                  .has_value());
}

}  // namespace
}  // namespace classicd::objspace
