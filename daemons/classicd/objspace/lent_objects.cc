// The table of lent objects and the id_pack rules (docs/protocol.md §4.2, §4.3).

#include "daemons/classicd/objspace/lent_objects.h"
#include <Python.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "daemons/classicd/objspace/convert.h"
#include "daemons/classicd/objspace/internal.h"
#include "daemons/classicd/objspace/py_ref.h"
#include "libcore/brine/value.h"

namespace classicd::objspace {
namespace {

int64_t Id(PyObject* o) { return static_cast<int64_t>(reinterpret_cast<intptr_t>(o)); }

// Appends str(o) as UTF-8.
bool AppendStr(PyObject* o, std::string* out) {
  PyRef s = PyUnicode_Check(o) ? PyRef::Borrow(o) : PyRef::Steal(PyObject_Str(o));
  if (!s) return false;
  Py_ssize_t n = 0;
  const char* p = PyUnicode_AsUTF8AndSize(s.get(), &n);
  if (p == nullptr) return false;
  out->append(p, static_cast<size_t>(n));
  return true;
}

// "<module>.<name>" of a class, as f"{cls.__module__}.{cls.__name__}".
bool ClassName(PyObject* cls, PyObject* s_module, PyObject* s_name, std::string* out) {
  auto* type = reinterpret_cast<PyTypeObject*>(cls);
  if (PyType_Check(cls) && Py_TYPE(cls) == &PyType_Type &&
      (type->tp_flags & Py_TPFLAGS_HEAPTYPE) == 0) {
    // Static types: both parts come from tp_name ("module.Name", or "Name" for builtins).
    std::string_view full(type->tp_name);
    size_t dot = full.rfind('.');
    if (dot == std::string_view::npos) {
      out->append("builtins.").append(full);
    } else {
      out->append(full);
    }
    return true;
  }
  PyRef mod = PyRef::Steal(PyObject_GetAttr(cls, s_module));
  if (!mod || !AppendStr(mod.get(), out)) return false;
  out->push_back('.');
  PyRef name = PyRef::Steal(PyObject_GetAttr(cls, s_name));
  return name && AppendStr(name.get(), out);
}

}  // namespace

void RaiseKeyError(const core::brine::Value& id_pack) {
  PyRef key = ToPython(id_pack);
  if (key) PyErr_SetObject(PyExc_KeyError, key.get());
}

bool LentObjects::Release(const IdKeyView& key, int64_t count) {
  auto it = table_.find(key);
  if (it == table_.end()) return false;
  it->second.refs -= count;
  if (it->second.refs <= 0) {
    Entry dead = std::move(it->second);
    table_.erase(it);
    // `dead` releases the object here, with the GIL held.
  }
  return true;
}

void LentObjects::Rollback(const std::vector<IdKey>& added) {
  for (const auto& key : added) (void)Release(key, 1);
}

// id_pack rules of §4.2, per generation.
bool MakeIdPack(const Interpreter::Support& sup, bool v6, PyObject* o, IdKey* key) {
  if (PyObject_TypeCheck(o, reinterpret_cast<PyTypeObject*>(sup.base_netref.get()))) {
    // A proxy of another connection, re-exported: its id_pack unchanged.
    PyRef idp = PyRef::Steal(PyObject_GetAttr(o, sup.s_id_pack_attr.get()));
    core::brine::Value v;
    if (!idp || ToValue(idp.get(), &v) != Dump::kOk || !ValueToKey(v, key)) {
      if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "bad proxy id_pack");
      return false;
    }
    return true;
  }
  PyObject* type = reinterpret_cast<PyObject*>(Py_TYPE(o));
  PyObject* s_module = sup.s_module.get();
  PyObject* s_name = sup.s_name.get();
  key->class_id = Id(type);
  key->instance_id = Id(o);
  std::string& np = key->name;
  np.clear();
  const bool v5 = !v6;
  PyRef name;  // getattr(o, '__name__', None), only where the rules look at it
  bool named_module = false;
  if (Py_IS_TYPE(o, &PyCFunction_Type)) {
    // A builtin function (5.x asks its name): its __name__ is its method definition's, read
    // here without making a str of it.
    named_module =
        v5 && std::strcmp(reinterpret_cast<PyCFunctionObject*>(o)->m_ml->ml_name, "module") == 0;
  } else if (v5 || PyModule_Check(o) || PyType_Check(o)) {
    PyObject* raw = nullptr;
    if (_PyObject_LookupAttr(o, s_name, &raw) < 0) return false;
    name = PyRef::Steal(raw);
    named_module = name && PyUnicode_Check(name.get()) &&
                   PyUnicode_CompareWithASCIIString(name.get(), "module") == 0;
  }
  if (PyModule_Check(o)) {
    if (!named_module) {
      PyObject* modules = PySys_GetObject("modules");  // borrowed
      int in_sys = (modules != nullptr && name) ? PyMapping_HasKey(modules, name.get()) : 0;
      if (in_sys != 0) return AppendStr(name.get(), &np);
      PyRef cls = PyRef::Steal(PyObject_GetAttr(o, sup.s_class.get()));
      PyRef mod = cls ? PyRef::Steal(PyObject_GetAttr(cls.get(), s_module)) : PyRef();
      if (!mod || !AppendStr(mod.get(), &np)) return false;
      np.push_back('.');
      return AppendStr(name ? name.get() : Py_None, &np);
    }
    if (!v5) {
      np = "{obj.__module__}.{obj_name}";  // 6.x formats this one without an f-string
      return true;
    }
    PyRef mod = PyRef::Steal(PyObject_GetAttr(o, s_module));
    if (!mod || !AppendStr(mod.get(), &np)) return false;
    np.append(".module");
    return true;
  }
  if (v5 && named_module) {
    // 5.3.0: anything named 'module' (types.ModuleType included) is treated as an instance.
    if (PyType_Check(o)) return ClassName(type, s_module, s_name, &np);
    PyObject* raw = nullptr;
    if (_PyObject_LookupAttr(o, s_module, &raw) < 0) return false;
    PyRef mod = PyRef::Steal(raw);
    if (mod) {
      if (!AppendStr(mod.get(), &np)) return false;
      np.push_back('.');
    }
    np.append("module");
    return true;
  }
  if (PyType_Check(o)) {
    key->class_id = Id(o);
    key->instance_id = 0;
    return ClassName(o, s_module, s_name, &np);
  }
  // obj.__class__ is type(obj) unless the class overrides __class__ or attribute lookup; skip
  // the getattr in the common case.
  PyTypeObject* t = Py_TYPE(o);
  if (t->tp_getattro == PyObject_GenericGetAttr &&
      _PyType_Lookup(t, sup.s_class.get()) == sup.object_class_descr.get()) {
    return ClassName(type, s_module, s_name, &np);
  }
  PyRef cls = PyRef::Steal(PyObject_GetAttr(o, sup.s_class.get()));
  if (!cls) {
    PyErr_Clear();
    cls = PyRef::Borrow(type);
  }
  return ClassName(cls.get(), s_module, s_name, &np);
}

}  // namespace classicd::objspace
