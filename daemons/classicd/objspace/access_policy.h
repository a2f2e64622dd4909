#pragma once

// The access policy: rpyc's rule for which attributes a peer may get, set, delete or call
// (Connection._access_attr and _check_attr, the same in rpyc 5.3 and 6.x), made once from a
// ProtocolConfig and asked by every gated handler: GETATTR, SETATTR, DELATTR, CALLATTR, CMP (on
// type(obj)), CTXEXIT (`__exit__`), OLDSLICING, PICKLE. CALL, REPR, STR, HASH, DIR, BUFFITER,
// INSTANCECHECK and INSPECT are not gated (rpyc does not gate them either).
//
// The rule, for attribute `name` of `obj` and operation op:
//  1. type(obj)._rpyc_getattr / _rpyc_setattr / _rpyc_delattr, when it exists and is not None,
//     replaces everything below: hook(obj, name[, value]) is the result.
//  2. allow_<op> false: AttributeError("cannot access 'name'").
//  3. name is plain when allow_all_attrs; or allow_exposed_attrs and it starts with
//     exposed_prefix; or allow_safe_attrs and it is in safe_attrs; or allow_public_attrs and it
//     does not start with "_".
//  4. with a prefix (allow_exposed_attrs and a non-empty exposed_prefix), has_exposed: obj has
//     prefix+name (hasattr, else inspect.getattr_static).
//  5. plain and (not has_exposed or hasattr(obj, name)): name; else has_exposed: prefix+name;
//     else plain: name; else AttributeError("cannot access 'name'").
// The classic service's policy (every name plain, no prefix, every operation allowed) skips
// steps 2-5 at the cost of one test. Needs <Python.h>; used with the GIL held.

#include <Python.h>

#include <memory>

#include "daemons/classicd/objspace/protocol_config.h"
#include "daemons/classicd/objspace/py_ref.h"

namespace classicd::objspace {

// What is done with the attribute.
enum class Access { kGet = 0, kSet = 1, kDelete = 2 };

class AccessPolicy {
 public:
  // NULL with a Python error set on failure (out of memory, no inspect module).
  static std::unique_ptr<AccessPolicy> Make(const ProtocolConfig& config);
  AccessPolicy(const AccessPolicy&) = delete;
  AccessPolicy& operator=(const AccessPolicy&) = delete;

  // rpyc's _access_attr: getattr(obj, name), setattr(obj, name, value) (None on success) or
  // delattr(obj, name) (None), through the hook or the rule. `raw_name` is a str, or bytes taken
  // as UTF-8 (anything else: TypeError). NULL with a Python error set when refused or failed.
  PyRef Apply(PyObject* obj, PyObject* raw_name, Access op, PyObject* value) const {
    PyRef name = AttrName(raw_name);
    if (!name) return name;
    return ApplyName(obj, name.get(), op, value);
  }
  // The same with a str name.
  PyRef ApplyName(PyObject* obj, PyObject* name, Access op, PyObject* value) const;

  // rpyc's _check_attr: the name to use (`name` or prefix+name), or NULL with AttributeError (or
  // what a hasattr() of user code raised) set. No hook is consulted.
  PyRef CheckAttr(PyObject* obj, PyObject* name, Access op) const;

  // HANDLE_PICKLE is served (else ValueError("pickling is disabled")).
  bool allow_pickle() const { return allow_pickle_; }
  // Every name is plain and no prefix applies: the classic service.
  bool all_plain() const { return all_plain_; }

 private:
  AccessPolicy() = default;
  static PyRef AttrName(PyObject* name);
  // type(obj)'s hook for `op`, a new reference; empty (no error) when there is none.
  PyRef Hook(PyObject* obj, Access op) const;
  // hasattr(obj, name) or, when `static_too`, inspect.getattr_static: 1, 0, or -1 with an error.
  int Has(PyObject* obj, PyObject* name, bool static_too) const;
  PyRef Denied(PyObject* name) const;

  bool allowed_[3] = {false, false, false};  // by Access
  bool all_plain_ = false;
  bool allow_all_ = false, allow_exposed_ = false, allow_safe_ = false, allow_public_ = false;
  bool allow_pickle_ = false;
  PyRef prefix_;  // exposed_prefix when allow_exposed_attrs (may be empty)
  PyRef safe_;    // frozenset of safe_attrs
  PyRef hooks_[3];
  PyRef underscore_;
  PyRef getattr_static_;  // inspect.getattr_static
};

}  // namespace classicd::objspace
