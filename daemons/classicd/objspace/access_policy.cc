// The access policy (access_policy.h).

#include "daemons/classicd/objspace/access_policy.h"
#include <Python.h>

#include <memory>
#include <string>
#include <vector>

#include "daemons/classicd/objspace/protocol_config.h"
#include "daemons/classicd/objspace/py_ref.h"

namespace classicd::objspace {

std::unique_ptr<AccessPolicy> AccessPolicy::Make(const ProtocolConfig& c) {
  std::unique_ptr<AccessPolicy> p(new AccessPolicy());
  p->allowed_[static_cast<int>(Access::kGet)] = c.allow_getattr;
  p->allowed_[static_cast<int>(Access::kSet)] = c.allow_setattr;
  p->allowed_[static_cast<int>(Access::kDelete)] = c.allow_delattr;
  p->allow_all_ = c.allow_all_attrs;
  p->allow_exposed_ = c.allow_exposed_attrs;
  p->allow_safe_ = c.allow_safe_attrs;
  p->allow_public_ = c.allow_public_attrs;
  p->allow_pickle_ = c.allow_pickle;
  // Without a prefix, step 4 never finds anything and a plain name is used as it is.
  p->all_plain_ = c.allow_all_attrs && !(c.allow_exposed_attrs && !c.exposed_prefix.empty());
  const char* hooks[3] = {"_rpyc_getattr", "_rpyc_setattr", "_rpyc_delattr"};
  for (int i = 0; i < 3; ++i) {
    p->hooks_[i] = PyRef::Steal(PyUnicode_InternFromString(hooks[i]));
    if (!p->hooks_[i]) return nullptr;
  }
  p->underscore_ = PyRef::Steal(PyUnicode_FromString("_"));
  p->prefix_ = PyRef::Steal(PyUnicode_DecodeUTF8(
      c.exposed_prefix.data(), static_cast<Py_ssize_t>(c.exposed_prefix.size()), "strict"));
  PyRef safe = PyRef::Steal(PyList_New(0));
  if (!p->underscore_ || !p->prefix_ || !safe) return nullptr;
  for (const auto& s : c.safe_attrs) {
    PyRef item =
        PyRef::Steal(PyUnicode_DecodeUTF8(s.data(), static_cast<Py_ssize_t>(s.size()), "strict"));
    if (!item || PyList_Append(safe.get(), item.get()) < 0) return nullptr;
  }
  p->safe_ = PyRef::Steal(PyFrozenSet_New(safe.get()));
  if (!p->safe_) return nullptr;
  if (!p->all_plain_) {
    PyRef inspect = PyRef::Steal(PyImport_ImportModule("inspect"));
    if (!inspect) return nullptr;
    p->getattr_static_ = PyRef::Steal(PyObject_GetAttrString(inspect.get(), "getattr_static"));
    if (!p->getattr_static_) return nullptr;
  }
  return p;
}

PyRef AccessPolicy::AttrName(PyObject* name) {
  if (PyUnicode_CheckExact(name)) return PyRef::Borrow(name);
  if (PyBytes_CheckExact(name)) {
    return PyRef::Steal(
        PyUnicode_DecodeUTF8(PyBytes_AS_STRING(name), PyBytes_GET_SIZE(name), "strict"));
  }
  PyErr_SetString(PyExc_TypeError, "name must be a string");
  return PyRef();
}

// getattr(type(obj), hook, None): the MRO lookup is cached and raises nothing when absent (a
// getattr on a type formats an AttributeError first, which cost more than the whole request).
// A metaclass other than `type` may provide the hook too: then the full getattr.
PyRef AccessPolicy::Hook(PyObject* obj, Access op) const {
  PyObject* hook_name = hooks_[static_cast<int>(op)].get();
  PyTypeObject* type = Py_TYPE(obj);
  PyRef hook;
  if (Py_IS_TYPE(reinterpret_cast<PyObject*>(type), &PyType_Type)) {
    if (_PyType_Lookup(type, hook_name) == nullptr) return PyRef();
    hook = PyRef::Steal(PyObject_GetAttr(reinterpret_cast<PyObject*>(type), hook_name));
  } else {
    hook = PyRef::Steal(PyObject_GetAttr(reinterpret_cast<PyObject*>(type), hook_name));
    if (!hook && PyErr_ExceptionMatches(PyExc_AttributeError)) PyErr_Clear();
  }
  if (hook && hook.get() == Py_None) return PyRef();  // `_rpyc_getattr = None`: no hook
  return hook;
}

PyRef AccessPolicy::ApplyName(PyObject* obj, PyObject* name, Access op, PyObject* value) const {
  PyRef hook = Hook(obj, op);
  if (hook) {
    if (op == Access::kSet) {
      return PyRef::Steal(PyObject_CallFunctionObjArgs(hook.get(), obj, name, value, nullptr));
    }
    return PyRef::Steal(PyObject_CallFunctionObjArgs(hook.get(), obj, name, nullptr));
  }
  if (PyErr_Occurred()) return PyRef();
  PyRef checked;
  if (!all_plain_ || !allowed_[static_cast<int>(op)]) {
    checked = CheckAttr(obj, name, op);
    if (!checked) return checked;
    name = checked.get();
  }
  switch (op) {
    case Access::kGet:
      return PyRef::Steal(PyObject_GetAttr(obj, name));
    case Access::kSet:
      if (PyObject_SetAttr(obj, name, value) < 0) return PyRef();
      return PyRef::Borrow(Py_None);
    case Access::kDelete:
      if (PyObject_DelAttr(obj, name) < 0) return PyRef();
      return PyRef::Borrow(Py_None);
  }
  return PyRef();
}

PyRef AccessPolicy::Denied(PyObject* name) const {
  PyErr_Format(PyExc_AttributeError, "cannot access %R", name);
  return PyRef();
}

int AccessPolicy::Has(PyObject* obj, PyObject* name, bool static_too) const {
  PyRef v = PyRef::Steal(PyObject_GetAttr(obj, name));
  if (v) return 1;
  // hasattr() lets every other exception through.
  if (!PyErr_ExceptionMatches(PyExc_AttributeError)) return -1;
  PyErr_Clear();
  if (!static_too) return 0;
  v = PyRef::Steal(PyObject_CallFunctionObjArgs(getattr_static_.get(), obj, name, nullptr));
  if (v) return 1;
  if (!PyErr_ExceptionMatches(PyExc_AttributeError)) return -1;
  PyErr_Clear();
  return 0;
}

PyRef AccessPolicy::CheckAttr(PyObject* obj, PyObject* name, Access op) const {
  if (!allowed_[static_cast<int>(op)]) return Denied(name);
  if (all_plain_) return PyRef::Borrow(name);
  bool plain = allow_all_;
  if (!plain && allow_exposed_) {
    const Py_ssize_t r = PyUnicode_Tailmatch(name, prefix_.get(), 0, PY_SSIZE_T_MAX, -1);
    if (r < 0) return PyRef();
    plain = r == 1;
  }
  if (!plain && allow_safe_) {
    const int r = PySet_Contains(safe_.get(), name);
    if (r < 0) return PyRef();
    plain = r == 1;
  }
  if (!plain && allow_public_) {
    const Py_ssize_t r = PyUnicode_Tailmatch(name, underscore_.get(), 0, PY_SSIZE_T_MAX, -1);
    if (r < 0) return PyRef();
    plain = r == 0;
  }
  PyRef exposed;
  bool has_exposed = false;
  if (allow_exposed_ && PyUnicode_GET_LENGTH(prefix_.get()) > 0) {
    exposed = PyRef::Steal(PyUnicode_Concat(prefix_.get(), name));
    if (!exposed) return exposed;
    const int r = Has(obj, exposed.get(), /*static_too=*/true);
    if (r < 0) return PyRef();
    has_exposed = r == 1;
  }
  if (plain && !has_exposed) return PyRef::Borrow(name);
  if (plain) {
    const int r = Has(obj, name, /*static_too=*/false);
    if (r < 0) return PyRef();
    if (r == 1) return PyRef::Borrow(name);
  }
  if (has_exposed) return exposed;
  return Denied(name);
}

}  // namespace classicd::objspace
