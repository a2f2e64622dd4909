#pragma once

// What the object space's tests share: the interpreter (one per test binary), brine shorthands, a
// fake peer whose replies the tests script, and a fixture with one object space. Compatibility
// with the real clients is proven by the e2e tests.

#include <Python.h>

#include <algorithm>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "daemons/classicd/objspace/objspace.h"
#include "libcore/brine/brine.h"
#include "libcore/brine/value.h"
#include "libcore/protocol/consts.h"
#include "libcore/protocol/object_space.h"

namespace classicd::objspace::testing {

namespace brine = core::brine;
using brine::Value;
using core::protocol::Generation;
using core::protocol::Handler;
using core::protocol::ObjectSpace;
using core::protocol::Outcome;

// The interpreter every test uses (started by the environment in objspace_testing.cc).
extern Interpreter* g_interp;

// Finalises the interpreter (for a forked child that ends after it).
void FinalizeInterpreter();

// --- brine shorthands ---
inline Value T(std::vector<Value> items) { return brine::MakeTuple(std::move(items)); }
inline Value S(const std::string& s) { return brine::MakeStr(s); }
inline Value I(int64_t i) { return brine::Int(i); }
inline Value ByVal(Value v) { return T({I(1), std::move(v)}); }
inline Value LocalRef(Value idp) { return T({I(3), std::move(idp)}); }
inline Value RemoteRef(Value idp) { return T({I(4), std::move(idp)}); }
inline Value Boxes(std::vector<Value> boxed) { return T({I(2), T(std::move(boxed))}); }
inline Value PayloadOf(const Value& boxed) { return boxed.as<brine::Tuple>().items[1]; }

// Handle(), with a reply that was made as brine bytes given back in `value` as the tree those
// bytes carry (what the client receives), so that `value.tree()` is never null.
inline Outcome HandleSent(ObjectSpace& space, Handler h, const Value& boxed) {
  Outcome o = space.Handle(h, boxed);
  if (o.value.tree() == nullptr) {
    auto v = o.value.Decoded();
    EXPECT_TRUE(v.has_value()) << v.error().ToString();
    o.value = v ? std::move(*v) : Value();
  }
  return o;
}
// The tree of args that HandleSent() gave back.
inline const Value& Tree(const core::protocol::Args& a) { return *a.tree(); }
inline Value PayloadOf(const core::protocol::Args& a) { return PayloadOf(Tree(a)); }

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
    return Tree(o.value);
  }
  // The exception value; fails the test on a reply.
  Value Exc(Handler h, const Value& boxed) {
    Outcome o = Run(h, boxed);
    EXPECT_EQ(o.kind, Outcome::Kind::kException) << o.value.Repr();
    return Tree(o.value);
  }

  static const Value& Label(const Value& boxed) { return boxed.as<brine::Tuple>().items[0]; }
  static const Value& Payload(const Value& boxed) { return boxed.as<brine::Tuple>().items[1]; }
  static const Value& Payload(const core::protocol::Args& a) { return Payload(Tree(a)); }
  static std::string NamePack(const core::protocol::Args& a) { return NamePack(Tree(a)); }
  static Value Idp(const core::protocol::Args& a) { return Idp(Tree(a)); }
  static std::string NamePack(const Value& boxed) {
    return Payload(boxed).as<brine::Tuple>().items[0].as<brine::Str>().utf8;
  }
  // id_pack of a REMOTE_REF reply.
  static Value Idp(const Value& boxed) {
    EXPECT_EQ(Label(boxed), I(4)) << boxed.Repr();
    return Payload(boxed);
  }

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
    return Tree(o.value);
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

// A connection's eval, as a client would send it: GETROOT, GETATTR eval, CALL.
inline Outcome EvalOn(ObjectSpace& space, const std::string& code) {
  Value root = PayloadOf(HandleSent(space, Handler::kGetRoot, ByVal(T({}))).value);
  Value eval = PayloadOf(
      HandleSent(space, Handler::kGetAttr, Boxes({LocalRef(root), ByVal(S("eval"))})).value);
  return HandleSent(space, Handler::kCall,
                    Boxes({LocalRef(eval), ByVal(T({S(code)})), ByVal(T({}))}));
}

// Waits for a forked child for up to `seconds`, killing it if it hangs: its wait status, or -1.
int WaitChild(int pid, int seconds);

}  // namespace classicd::objspace::testing
