// The access policy, row by row against rpyc's own Connection._access_attr (python3-rpyc 5.3.0 from
// Debian, and the 6.x library when RPYC6_PATH names it): each row runs the same operation on two
// fresh objects, one through AccessPolicy and one through rpyc's code with the same config, and
// both outcomes must equal the row's expectation.

#include "daemons/classicd/objspace/access_policy.h"
#include <Python.h>

#include <cstdio>
#include <cstdlib>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include "daemons/classicd/objspace/internal.h"
#include "daemons/classicd/objspace/objspace_testing.h"
#include "daemons/classicd/objspace/protocol_config.h"
#include "daemons/classicd/objspace/py_ref.h"

namespace classicd::objspace::testing {
namespace {

// The objects of the rows, and rpyc's side. `outcome` describes what an operation did: the
// value's repr, or "Type: message", then what the object holds afterwards.
constexpr const char* kRowsModule = R"PY(
import inspect, sys, types

def load_rpyc(path):
    saved = {k: v for k, v in sys.modules.items() if k == 'rpyc' or k.startswith('rpyc.')}
    for k in saved:
        del sys.modules[k]
    sys.path.insert(0, path)
    try:
        import rpyc.core.protocol as protocol
        import rpyc
        return protocol, rpyc
    finally:
        sys.path.remove(path)
        for k in [k for k in sys.modules if k == 'rpyc' or k.startswith('rpyc.')]:
            del sys.modules[k]
        sys.modules.update(saved)

class Plain:
    x = 1
    _p = 2
    exposed_y = 3
    def exposed_add(self, a, b):
        return a + b
    def __len__(self):
        return 7

class Both:
    z = 'plain z'
    exposed_z = 'exposed z'

class OnlyExposed:
    exposed_w = 'exposed w'

class Hooked:
    def _rpyc_getattr(self, name):
        return 'hooked ' + name
    def _rpyc_setattr(self, name, value):
        self.__dict__['set_' + name] = value
    def _rpyc_delattr(self, name):
        raise AttributeError('no deleting ' + name)

class NoneHook:
    _rpyc_getattr = None
    a = 'a'

class Raising:
    def __getattr__(self, name):
        raise ValueError('lookup of ' + name)

class Slotted:
    __slots__ = ('exposed_s',)

class Meta(type):
    def _rpyc_getattr(cls, name):
        return 'meta ' + name

class WithMeta(metaclass=Meta):
    q = 'q'

def make(kind, rpyc):
    if kind == 'service':
        class CalcService(rpyc.Service):
            value = 'v'
            def exposed_add(self, a, b):
                return a + b
        return CalcService()
    if kind == 'withmeta':
        return type('WithMeta', (WithMeta,), {})
    return globals()[kind]()

def outcome(fn, obj):
    try:
        r = fn()
        text = 'value ' + (r.__name__ if callable(r) and hasattr(r, '__name__') else repr(r))
    except Exception as e:
        text = type(e).__name__ + ': ' + str(e)
    state = getattr(obj, '__dict__', None)
    if isinstance(state, dict) and state:
        text += ' ' + repr(sorted((k, v) for k, v in state.items()))
    return text

OPS = {0: ('_rpyc_getattr', 'allow_getattr', getattr), 1: ('_rpyc_setattr', 'allow_setattr', setattr),
       2: ('_rpyc_delattr', 'allow_delattr', delattr)}

def rpyc_outcome(protocol, rpyc, config, kind, name, op, value):
    conf = dict(protocol.DEFAULT_CONFIG)
    conf.update(config)
    fake = types.SimpleNamespace(_config=conf)
    fake._check_attr = lambda o, n, p: protocol.Connection._check_attr(fake, o, n, p)
    obj = make(kind, rpyc)
    overrider, param, default = OPS[op]
    args = (value,) if op == 1 else ()
    return outcome(lambda: protocol.Connection._access_attr(fake, obj, name, args, overrider, param,
                                                          default), obj)
)PY";

enum Cfg {
  kDefault,
  kPublic,
  kAll,
  kAllExposed,
  kNoExposed,
  kEmptyPrefix,
  kOtherPrefix,
  kSetDel,
  kNoGet,
  kNoSafe,
  kClassic
};

ProtocolConfig MakeConfig(Cfg c) {
  ProtocolConfig p;
  switch (c) {
    case kDefault:
      break;
    case kPublic:
      p.allow_public_attrs = true;
      break;
    case kAll:
      p.allow_all_attrs = true;
      p.allow_exposed_attrs = false;
      break;
    case kAllExposed:
      p.allow_all_attrs = true;
      break;
    case kNoExposed:
      p.allow_exposed_attrs = false;
      break;
    case kEmptyPrefix:
      p.exposed_prefix = "";
      break;
    case kOtherPrefix:
      p.exposed_prefix = "remote_";
      break;
    case kSetDel:
      p.allow_setattr = true;
      p.allow_delattr = true;
      p.allow_public_attrs = true;
      break;
    case kNoGet:
      p.allow_getattr = false;
      p.allow_all_attrs = true;
      break;
    case kNoSafe:
      p.allow_safe_attrs = false;
      break;
    case kClassic:
      p = ProtocolConfig::Classic();
      break;
  }
  return p;
}

struct Row {
  Cfg cfg;
  const char* kind;  // make()'s argument
  const char* name;
  Access op;
  const char* expected;
};

// Set values are the string 'new'.
const Row kRows[] = {
    // The exposed_ convention (DEFAULT_CONFIG).
    {kDefault, "Plain", "add", Access::kGet, "value exposed_add"},
    {kDefault, "Plain", "exposed_add", Access::kGet, "value exposed_add"},
    {kDefault, "Plain", "y", Access::kGet, "value 3"},
    {kDefault, "Plain", "x", Access::kGet, "AttributeError: cannot access 'x'"},
    {kDefault, "Plain", "_p", Access::kGet, "AttributeError: cannot access '_p'"},
    {kDefault, "Plain", "missing", Access::kGet, "AttributeError: cannot access 'missing'"},
    {kDefault, "Plain", "exposed_missing", Access::kGet,
     "AttributeError: 'Plain' object has no attribute 'exposed_missing'"},
    {kDefault, "Plain", "__len__", Access::kGet, "value __len__"},
    {kDefault, "Plain", "__class__", Access::kGet, "AttributeError: cannot access '__class__'"},
    {kDefault, "Plain", "__dict__", Access::kGet, "AttributeError: cannot access '__dict__'"},
    {kDefault, "Both", "z", Access::kGet, "value 'exposed z'"},
    {kDefault, "OnlyExposed", "w", Access::kGet, "value 'exposed w'"},
    {kDefault, "Slotted", "s", Access::kGet,
     "AttributeError: 'Slotted' object has no attribute 'exposed_s'"},
    {kDefault, "Raising", "v", Access::kGet, "ValueError: lookup of exposed_v"},
    {kDefault, "Plain", "x", Access::kSet, "AttributeError: cannot access 'x'"},
    {kDefault, "Plain", "x", Access::kDelete, "AttributeError: cannot access 'x'"},
    // Hooks replace the rule, allow_setattr included.
    {kDefault, "Hooked", "anything", Access::kGet, "value 'hooked anything'"},
    {kDefault, "Hooked", "k", Access::kSet, "value None [('set_k', 'new')]"},
    {kDefault, "Hooked", "k", Access::kDelete, "AttributeError: no deleting k"},
    {kNoGet, "Hooked", "k", Access::kGet, "value 'hooked k'"},
    {kDefault, "NoneHook", "a", Access::kGet, "AttributeError: cannot access 'a'"},
    {kPublic, "NoneHook", "a", Access::kGet, "value 'a'"},
    {kDefault, "withmeta", "q", Access::kGet, "value 'meta q'"},
    // rpyc.Service: exposed names, and _rpyc_setattr/_rpyc_delattr that deny.
    {kDefault, "service", "add", Access::kGet, "value exposed_add"},
    {kDefault, "service", "get_service_name", Access::kGet, "value get_service_name"},
    {kDefault, "service", "value", Access::kGet, "AttributeError: cannot access 'value'"},
    {kSetDel, "service", "value", Access::kSet, "AttributeError: access denied"},
    {kSetDel, "service", "value", Access::kDelete, "AttributeError: access denied"},
    {kClassic, "service", "value", Access::kSet, "AttributeError: access denied"},
    // allow_public_attrs
    {kPublic, "Plain", "x", Access::kGet, "value 1"},
    {kPublic, "Plain", "_p", Access::kGet, "AttributeError: cannot access '_p'"},
    {kPublic, "Both", "z", Access::kGet, "value 'plain z'"},
    {kPublic, "Plain", "add", Access::kGet, "value exposed_add"},
    {kPublic, "Plain", "missing", Access::kGet,
     "AttributeError: 'Plain' object has no attribute 'missing'"},
    {kPublic, "Plain", "x", Access::kSet, "AttributeError: cannot access 'x'"},
    {kSetDel, "Plain", "x", Access::kSet, "value None [('x', 'new')]"},
    {kSetDel, "Plain", "_p", Access::kSet, "AttributeError: cannot access '_p'"},
    {kSetDel, "Plain", "x", Access::kDelete, "AttributeError: 'Plain' object has no attribute 'x'"},
    {kSetDel, "Plain", "y", Access::kSet, "value None [('exposed_y', 'new')]"},
    // allow_all_attrs, with and without the exposed_ convention.
    {kAll, "Plain", "_p", Access::kGet, "value 2"},
    {kAll, "Plain", "add", Access::kGet, "AttributeError: 'Plain' object has no attribute 'add'"},
    {kAllExposed, "Plain", "add", Access::kGet, "value exposed_add"},
    {kAllExposed, "Both", "z", Access::kGet, "value 'plain z'"},
    {kAllExposed, "Plain", "__class__", Access::kGet, "value Plain"},
    {kNoGet, "Plain", "x", Access::kGet, "AttributeError: cannot access 'x'"},
    // The prefix switched off, empty or another one; safe attrs off.
    {kNoExposed, "Plain", "add", Access::kGet, "AttributeError: cannot access 'add'"},
    {kNoExposed, "Plain", "exposed_add", Access::kGet,
     "AttributeError: cannot access 'exposed_add'"},
    {kNoExposed, "Plain", "__len__", Access::kGet, "value __len__"},
    {kEmptyPrefix, "Plain", "x", Access::kGet, "value 1"},
    {kEmptyPrefix, "Plain", "add", Access::kGet,
     "AttributeError: 'Plain' object has no attribute 'add'"},
    {kOtherPrefix, "Plain", "exposed_add", Access::kGet,
     "AttributeError: cannot access 'exposed_add'"},
    {kNoSafe, "Plain", "__len__", Access::kGet, "AttributeError: cannot access '__len__'"},
    // The classic service's policy.
    {kClassic, "Plain", "_p", Access::kGet, "value 2"},
    {kClassic, "Plain", "exposed_add", Access::kGet, "value exposed_add"},
    {kClassic, "Plain", "x", Access::kSet, "value None [('x', 'new')]"},
};

class AccessPolicyTest : public ::testing::Test {
 protected:
  // The rows' module, made in the child that uses it (see RunRows()).
  void LoadRows() {
    PyRef code = PyRef::Steal(Py_CompileString(kRowsModule, "_policy_rows", Py_file_input));
    ASSERT_TRUE(code) << FetchErrorText();
    rows_ = PyRef::Steal(PyImport_ExecCodeModule("_policy_rows", code.get()));
    ASSERT_TRUE(rows_) << FetchErrorText();
  }

  // rpyc's protocol module and package from `path`; empty when it cannot be imported.
  std::pair<PyRef, PyRef> Rpyc(const std::string& path) {
    LoadRows();
    if (!rows_) return {};
    PyRef pair = PyRef::Steal(PyObject_CallMethod(rows_.get(), "load_rpyc", "s", path.c_str()));
    if (!pair) {
      ADD_FAILURE() << "rpyc from " << path << ": " << FetchErrorText();
      return {};
    }
    return {PyRef::Borrow(PyTuple_GET_ITEM(pair.get(), 0)),
            PyRef::Borrow(PyTuple_GET_ITEM(pair.get(), 1))};
  }

  std::string Ours(const Row& row, PyObject* rpyc) {
    auto policy = AccessPolicy::Make(MakeConfig(row.cfg));
    if (!policy) return "Make failed: " + FetchErrorText();
    PyRef obj = PyRef::Steal(PyObject_CallMethod(rows_.get(), "make", "sO", row.kind, rpyc));
    if (!obj) return "make failed: " + FetchErrorText();
    // outcome(fn, obj) with fn calling the policy through a tiny native trampoline.
    PyRef name = PyRef::Steal(PyUnicode_FromString(row.name));
    PyRef value = PyRef::Steal(PyUnicode_FromString("new"));
    PyRef result = policy->Apply(obj.get(), name.get(), row.op, value.get());
    PyRef thunk;
    if (result) {
      PyRef consts = PyRef::Steal(PyTuple_Pack(1, result.get()));
      thunk =
          PyRef::Steal(PyRun_String("lambda v: (lambda: v)", Py_eval_input,
                                    PyModule_GetDict(rows_.get()), PyModule_GetDict(rows_.get())));
      thunk = PyRef::Steal(PyObject_CallOneArg(thunk.get(), result.get()));
    } else {
      PyObject *t = nullptr, *v = nullptr, *tb = nullptr;
      PyErr_Fetch(&t, &v, &tb);
      PyErr_NormalizeException(&t, &v, &tb);
      PyRef exc = PyRef::Steal(v);
      Py_XDECREF(t);
      Py_XDECREF(tb);
      PyRef maker =
          PyRef::Steal(PyRun_String("lambda e: (lambda: (_ for _ in ()).throw(e))", Py_eval_input,
                                    PyModule_GetDict(rows_.get()), PyModule_GetDict(rows_.get())));
      thunk = PyRef::Steal(PyObject_CallOneArg(maker.get(), exc.get()));
    }
    if (!thunk) return "thunk failed: " + FetchErrorText();
    PyRef text =
        PyRef::Steal(PyObject_CallMethod(rows_.get(), "outcome", "OO", thunk.get(), obj.get()));
    if (!text) return "outcome failed: " + FetchErrorText();
    return PyUnicode_AsUTF8(text.get());
  }

  std::string Reference(const Row& row, PyObject* protocol, PyObject* rpyc) {
    PyRef config = ProtocolConfigDict(MakeConfig(row.cfg));
    PyRef text = PyRef::Steal(PyObject_CallMethod(rows_.get(), "rpyc_outcome", "OOOssis", protocol,
                                                  rpyc, config.get(), row.kind, row.name,
                                                  static_cast<int>(row.op), "new"));
    if (!text) return "rpyc_outcome failed: " + FetchErrorText();
    return PyUnicode_AsUTF8(text.get());
  }

  // In a forked child, so that importing rpyc and the rows' classes leave nothing in this
  // process's interpreter (the leak test counts its allocations).
  void RunRows(const std::string& rpyc_path) {
    auto pid = g_interp->Fork(/*freeze_gc=*/false);
    ASSERT_TRUE(pid.has_value()) << pid.error().ToString();
    if (*pid == 0) {
      {
        GilHold gil;
        auto [protocol, rpyc] = Rpyc(rpyc_path);
        for (const Row& row : kRows) {
          if (!protocol) break;
          SCOPED_TRACE(std::string(row.kind) + "." + row.name + " op " +
                       std::to_string(static_cast<int>(row.op)) + " cfg " +
                       std::to_string(row.cfg));
          EXPECT_EQ(Ours(row, rpyc.get()), row.expected);
          EXPECT_EQ(Reference(row, protocol.get(), rpyc.get()), row.expected)
              << "rpyc " << rpyc_path;
        }
      }
      std::fflush(stdout);
      _exit(::testing::Test::HasFailure() ? 1 : 0);
    }
    const int status = WaitChild(*pid, 60);
    ASSERT_NE(status, -1) << "the child hung";
    ASSERT_TRUE(WIFEXITED(status)) << status;
    EXPECT_EQ(WEXITSTATUS(status), 0) << "rows differ (the child's failures are above)";
  }

  PyRef rows_;
};

TEST_F(AccessPolicyTest, RowsMatchRpyc5) { RunRows("/usr/lib/python3/dist-packages"); }

TEST_F(AccessPolicyTest, RowsMatchRpyc6) {
  const char* path = std::getenv("RPYC6_PATH");
  if (path == nullptr || *path == '\0')
    GTEST_SKIP() << "RPYC6_PATH is not set: rpyc 6.x rows skipped";
  RunRows(path);
}

TEST_F(AccessPolicyTest, BytesNamesAndWrongTypes) {
  GilHold gil;
  auto policy = AccessPolicy::Make(ProtocolConfig());
  ASSERT_TRUE(policy);
  PyRef globals = PyRef::Steal(PyDict_New());
  PyDict_SetItemString(globals.get(), "__builtins__", PyEval_GetBuiltins());
  PyRef obj =
      PyRef::Steal(PyRun_String("type('Plain', (), {'exposed_add': lambda s, a, b: a + b})()",
                                Py_eval_input, globals.get(), globals.get()));
  ASSERT_TRUE(obj) << FetchErrorText();
  PyRef bytes_name = PyRef::Steal(PyBytes_FromString("add"));
  PyRef r = policy->Apply(obj.get(), bytes_name.get(), Access::kGet, nullptr);
  ASSERT_TRUE(r) << FetchErrorText();
  PyRef int_name = PyRef::Steal(PyLong_FromLong(1));
  r = policy->Apply(obj.get(), int_name.get(), Access::kGet, nullptr);
  EXPECT_FALSE(r);
  EXPECT_EQ(FetchErrorText(), "TypeError: name must be a string");
  EXPECT_FALSE(policy->allow_pickle());
  EXPECT_FALSE(policy->all_plain());
  auto classic = AccessPolicy::Make(ProtocolConfig::Classic());
  EXPECT_TRUE(classic->allow_pickle());
  EXPECT_TRUE(classic->all_plain());
}

}  // namespace
}  // namespace classicd::objspace::testing
