// The handlers (docs/protocol.md §5) with SlaveService semantics: Dispatch() for those whose
// arguments are unboxed, Inspect() and HandleDel() for the two that answer from tables.

#include <Python.h>

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "daemons/classicd/objspace/classic_object_space.h"
#include "daemons/classicd/objspace/convert.h"
#include "daemons/classicd/objspace/internal.h"
#include "daemons/classicd/objspace/lent_objects.h"
#include "daemons/classicd/objspace/py_ref.h"
#include "libcore/brine/brine.h"
#include "libcore/brine/value.h"
#include "libcore/protocol/consts.h"
#include "libcore/protocol/object_space.h"

namespace classicd::objspace {

namespace brine = core::brine;
using core::protocol::Handler;
using core::protocol::Outcome;

namespace {

PyRef CheckArgs(PyObject* args, Py_ssize_t min, Py_ssize_t max, const char* handler) {
  Py_ssize_t n = PyTuple_GET_SIZE(args);
  if (n < min || n > max) {
    PyErr_Format(PyExc_TypeError, "%s handler takes %zd to %zd arguments (%zd given)", handler, min,
                 max, n);
    return PyRef();
  }
  return PyRef::Borrow(args);
}

// The version tag of a class, assigned if need be; 0 when it has none (then nothing is cached).
unsigned VersionTag(PyTypeObject* t, PyObject* any_name) {
  if ((t->tp_flags & Py_TPFLAGS_VALID_VERSION_TAG) == 0) (void)_PyType_Lookup(t, any_name);
  return (t->tp_flags & Py_TPFLAGS_VALID_VERSION_TAG) != 0 ? t->tp_version_tag : 0;
}
constexpr size_t kMethodsCacheSize = 4096;

}  // namespace

PyRef ClassicObjectSpace::Call(PyObject* fn, PyObject* args, PyObject* kwargs) {
  PyRef pos = PyTuple_Check(args) ? PyRef::Borrow(args) : PyRef::Steal(PySequence_Tuple(args));
  if (!pos) return pos;
  PyRef kw;
  if (kwargs != nullptr && kwargs != Py_None && PyObject_Length(kwargs) != 0) {
    kw = PyRef::Steal(PyObject_CallOneArg(reinterpret_cast<PyObject*>(&PyDict_Type), kwargs));
    if (!kw) return kw;
  } else if (PyErr_Occurred()) {
    return PyRef();
  }
  // A Python function runs in a frame of its own. Anything else (builtins, method descriptors,
  // classes, C-implemented callables) is called from a frame of support_calls.py's call(): builtins
  // that read their caller's frame (eval, exec, globals, locals, vars, dir) need one, and each
  // call's locals are its own (docs/embedding.md §3.7).
  if (PyFunction_Check(fn) || (PyMethod_Check(fn) && PyFunction_Check(PyMethod_GET_FUNCTION(fn)))) {
    return PyRef::Steal(PyObject_Call(fn, pos.get(), kw.get()));
  }
  PyObject* argv[] = {fn, pos.get(), kw.get()};
  if (!kw && PyTuple_GET_SIZE(pos.get()) == 0) {
    return PyRef::Steal(PyObject_Vectorcall(sup_.call0.get(), argv, 1, nullptr));
  }
  if (kw) return PyRef::Steal(PyObject_Vectorcall(sup_.call_kw.get(), argv, 3, nullptr));
  return PyRef::Steal(PyObject_Vectorcall(sup_.call.get(), argv, 2, nullptr));
}

PyRef ClassicObjectSpace::Dispatch(Handler h, PyObject* a) {
  auto arg = [a](Py_ssize_t i) { return PyTuple_GET_ITEM(a, i); };
  Py_ssize_t n = PyTuple_GET_SIZE(a);
  switch (h) {
    case Handler::kPing:
      if (!CheckArgs(a, 1, 1, "PING")) return PyRef();
      return PyRef::Borrow(arg(0));
    case Handler::kGetRoot:
      if (!CheckArgs(a, 0, 0, "GETROOT")) return PyRef();
      return PyRef::Borrow(root_.get());
    case Handler::kGetAttr:
      if (!CheckArgs(a, 2, 2, "GETATTR")) return PyRef();
      return policy_.Apply(arg(0), arg(1), Access::kGet, nullptr);
    case Handler::kDelAttr:
      if (!CheckArgs(a, 2, 2, "DELATTR")) return PyRef();
      return policy_.Apply(arg(0), arg(1), Access::kDelete, nullptr);
    case Handler::kSetAttr:
      if (!CheckArgs(a, 3, 3, "SETATTR")) return PyRef();
      return policy_.Apply(arg(0), arg(1), Access::kSet, arg(2));
    case Handler::kCall:
      if (!CheckArgs(a, 2, 3, "CALL")) return PyRef();
      return Call(arg(0), arg(1), n > 2 ? arg(2) : nullptr);
    case Handler::kCallAttr: {
      if (!CheckArgs(a, 3, 4, "CALLATTR")) return PyRef();
      PyRef fn = policy_.Apply(arg(0), arg(1), Access::kGet, nullptr);
      if (!fn) return fn;
      return Call(fn.get(), arg(2), n > 3 ? arg(3) : nullptr);
    }
    case Handler::kRepr:
      if (!CheckArgs(a, 1, 1, "REPR")) return PyRef();
      return PyRef::Steal(PyObject_Repr(arg(0)));
    case Handler::kStr:
      if (!CheckArgs(a, 1, 1, "STR")) return PyRef();
      return PyRef::Steal(PyObject_Str(arg(0)));
    case Handler::kCmp: {
      if (!CheckArgs(a, 2, 3, "CMP")) return PyRef();
      PyObject* op = n > 2 ? arg(2) : sup_.s_cmp.get();
      PyObject* type = reinterpret_cast<PyObject*>(Py_TYPE(arg(0)));
      PyRef fn = policy_.Apply(type, op, Access::kGet, nullptr);
      if (!fn) return fn;
      return PyRef::Steal(PyObject_CallFunctionObjArgs(fn.get(), arg(0), arg(1), nullptr));
    }
    case Handler::kHash: {
      if (!CheckArgs(a, 1, 1, "HASH")) return PyRef();
      Py_hash_t hv = PyObject_Hash(arg(0));
      if (hv == -1 && PyErr_Occurred()) return PyRef();
      return PyRef::Steal(PyLong_FromSsize_t(hv));
    }
    case Handler::kDir: {
      if (!CheckArgs(a, 1, 1, "DIR")) return PyRef();
      PyRef names = PyRef::Steal(PyObject_Dir(arg(0)));
      if (!names) return names;
      return PyRef::Steal(PySequence_Tuple(names.get()));
    }
    case Handler::kPickle:
      if (!CheckArgs(a, 2, 2, "PICKLE")) return PyRef();
      if (!policy_.allow_pickle()) {
        PyErr_SetString(PyExc_ValueError, "pickling is disabled");
        return PyRef();
      }
      return PyRef::Steal(
          PyObject_CallFunctionObjArgs(sup_.pickle_dumps.get(), arg(0), arg(1), nullptr));
    case Handler::kBuffIter: {
      if (!CheckArgs(a, 2, 2, "BUFFITER")) return PyRef();
      Py_ssize_t count = PyNumber_AsSsize_t(arg(1), PyExc_OverflowError);
      if (count == -1 && PyErr_Occurred()) return PyRef();
      PyRef it = PyRef::Steal(PyObject_GetIter(arg(0)));
      if (!it) return it;
      PyRef list = PyRef::Steal(PyList_New(0));
      if (!list) return list;
      for (Py_ssize_t i = 0; i < count; ++i) {
        PyRef item = PyRef::Steal(PyIter_Next(it.get()));
        if (!item) {
          if (PyErr_Occurred()) return PyRef();
          break;
        }
        if (PyList_Append(list.get(), item.get()) < 0) return PyRef();
      }
      return PyRef::Steal(PyList_AsTuple(list.get()));
    }
    case Handler::kOldSlicing:
      if (!CheckArgs(a, 6, 6, "OLDSLICING")) return PyRef();
      return OldSlicing(arg(0), arg(1), arg(2), arg(3), arg(4), arg(5));
    case Handler::kCtxExit: {
      if (!CheckArgs(a, 2, 2, "CTXEXIT")) return PyRef();
      // obj.__exit__ is fetched as a GETATTR would be.
      PyRef exit_method = policy_.ApplyName(arg(0), sup_.s_exit.get(), Access::kGet, nullptr);
      if (!exit_method) return exit_method;
      return PyRef::Steal(
          PyObject_CallFunctionObjArgs(sup_.ctxexit.get(), exit_method.get(), arg(1), nullptr));
    }
    case Handler::kInstanceCheck:
      if (!CheckArgs(a, 2, 2, "INSTANCECHECK")) return PyRef();
      return InstanceCheck(arg(0), arg(1));
    case Handler::kClose:
    case Handler::kDel:
    case Handler::kInspect:  // Handle() answers it (Inspect)
      break;
  }
  PyErr_Format(PyExc_KeyError, "%d", static_cast<int>(h));
  return PyRef();
}

// obj[start:stop] in the client's Python 2 spelling (§5.2): the `attempt` method (__getitem__...)
// with a slice, else the `fallback` one (__getslice__...) with the bounds; both fetched as a
// GETATTR would be.
PyRef ClassicObjectSpace::OldSlicing(PyObject* obj, PyObject* attempt, PyObject* fallback,
                                     PyObject* start, PyObject* stop, PyObject* args) {
  PyRef extra = PyTuple_Check(args) ? PyRef::Borrow(args) : PyRef::Steal(PySequence_Tuple(args));
  if (!extra) return extra;
  {
    PyRef fn = policy_.Apply(obj, attempt, Access::kGet, nullptr);
    PyRef slice = fn ? PyRef::Steal(PySlice_New(start, stop, nullptr)) : PyRef();
    PyRef head = slice ? PyRef::Steal(PyTuple_Pack(1, slice.get())) : PyRef();
    PyRef all = head ? PyRef::Steal(PySequence_Concat(head.get(), extra.get())) : PyRef();
    PyRef r = all ? PyRef::Steal(PyObject_Call(fn.get(), all.get(), nullptr)) : PyRef();
    if (r || !PyErr_ExceptionMatches(PyExc_Exception)) return r;
    PyErr_Clear();
  }
  PyRef bound =
      stop == Py_None ? PyRef::Steal(PyLong_FromSsize_t(PY_SSIZE_T_MAX)) : PyRef::Borrow(stop);
  if (!bound) return bound;
  PyRef fn = policy_.Apply(obj, fallback, Access::kGet, nullptr);
  if (!fn) return fn;
  PyRef head = PyRef::Steal(PyTuple_Pack(2, start, bound.get()));
  PyRef all = head ? PyRef::Steal(PySequence_Concat(head.get(), extra.get())) : PyRef();
  if (!all) return all;
  return PyRef::Steal(PyObject_Call(fn.get(), all.get(), nullptr));
}

// isinstance(obj, cls) for the client's netref class whose id_pack is given (§5.2).
PyRef ClassicObjectSpace::InstanceCheck(PyObject* obj, PyObject* id_pack) {
  brine::Value idp;
  IdKeyView key;
  PyRef other = PyRef::Borrow(Py_None);  // a reference of our own: Python runs below
  PyRef name_pack = PyRef::Borrow(Py_None);
  if (ToValue(id_pack, &idp) == Dump::kOk && ValueToKeyView(idp, &key)) {
    if (PyObject* o = lent_.Find(key); o != nullptr) other = PyRef::Borrow(o);
    name_pack = PyRef::Steal(
        PyUnicode_FromStringAndSize(key.name.data(), static_cast<Py_ssize_t>(key.name.size())));
    if (!name_pack) return name_pack;
  } else {
    PyErr_Clear();
    return PyRef::Borrow(Py_False);
  }
  return PyRef::Steal(PyObject_CallFunctionObjArgs(sup_.instancecheck.get(), obj, other.get(),
                                                   name_pack.get(), nullptr));
}

// INSPECT's method list (§5.3), boxed for the reply; cached per class version.
Outcome ClassicObjectSpace::Inspect(PyObject* args) {
  if (!CheckArgs(args, 1, 1, "INSPECT")) return ExceptionOutcome();
  PyObject* id_pack = PyTuple_GET_ITEM(args, 0);
  brine::Value idp;
  if (ToValue(id_pack, &idp) != Dump::kOk) {
    if (!PyErr_Occurred()) PyErr_SetObject(PyExc_KeyError, id_pack);
    return ExceptionOutcome();
  }
  PyRef obj = LookupLocal(idp);
  if (!obj) return ExceptionOutcome();
  MethodsKey key;
  key.v6 = v6();
  key.type = Py_TYPE(obj.get());
  key.type_tag = VersionTag(key.type, sup_.s_name.get());
  bool cacheable = key.type_tag != 0;
  if (PyType_Check(obj.get())) {
    key.cls = reinterpret_cast<PyTypeObject*>(obj.get());
    key.cls_tag = VersionTag(key.cls, sup_.s_name.get());
    cacheable = cacheable && key.cls_tag != 0;
  }
  auto& cache = sup_.methods_cache;
  if (cacheable) {
    auto it = cache.find(key);
    if (it != cache.end()) return Outcome::EncodedReply(it->second);
  }
  PyRef methods = PyRef::Steal(PyObject_CallFunctionObjArgs(sup_.get_methods.get(), obj.get(),
                                                            key.v6 ? Py_True : Py_False, nullptr));
  if (!methods) return ExceptionOutcome();
  std::vector<IdKey> added;
  brine::Value boxed;
  if (!Box(methods.get(), &boxed, &added)) {
    lent_.Rollback(added);
    return ExceptionOutcome();
  }
  // get_methods ran Python code, which may have changed the classes: recheck the tags. Only
  // by-value lists are cached (they always are: tuples of str pairs and None).
  if (cacheable && added.empty() && VersionTag(key.type, sup_.s_name.get()) == key.type_tag &&
      (key.cls == nullptr || VersionTag(key.cls, sup_.s_name.get()) == key.cls_tag)) {
    if (cache.size() >= kMethodsCacheSize) cache.clear();
    auto encoded = std::make_shared<std::string>();
    brine::Encode(boxed, encoded.get());
    cache[key] = encoded;
    return Outcome::EncodedReply(std::move(encoded));
  }
  return Outcome::Reply(std::move(boxed));
}

// DEL (§4.3): keyed on the id_pack received in the LOCAL_REF, not recomputed from the object.
Outcome ClassicObjectSpace::HandleDel(const brine::Value& boxed_args) {
  const auto* outer = boxed_args.get_if<brine::Tuple>();
  const brine::Tuple* args = nullptr;
  int64_t label = 0;
  if (outer != nullptr && outer->items.size() == 2 && SmallInt(outer->items[0], &label)) {
    args = outer->items[1].get_if<brine::Tuple>();
  }
  if (args == nullptr || args->items.empty() || args->items.size() > 2) {
    PyErr_SetString(PyExc_TypeError, "DEL handler takes 1 or 2 arguments");
    return ExceptionOutcome();
  }
  // The object: a LOCAL_REF when label is 2; with label 1 the whole tuple is by value (not ours).
  const brine::Value* id_pack = nullptr;
  int64_t count = 1;
  if (label == core::protocol::kLabelTuple) {
    const auto* ref = args->items[0].get_if<brine::Tuple>();
    int64_t ref_label = 0;
    if (ref != nullptr && ref->items.size() == 2 && SmallInt(ref->items[0], &ref_label) &&
        ref_label == core::protocol::kLabelLocalRef) {
      id_pack = &ref->items[1];
    }
    if (args->items.size() == 2 && !BoxedSmallInt(args->items[1], &count)) {
      PyRef c = Unbox(args->items[1]);
      if (!c) return ExceptionOutcome();
      count = PyLong_AsLongLong(c.get());
      if (count == -1 && PyErr_Occurred()) return ExceptionOutcome();
    }
  }
  if (id_pack == nullptr) {
    PyErr_SetString(PyExc_TypeError, "DEL needs a local reference");
    return ExceptionOutcome();
  }
  IdKeyView key;
  if (!ValueToKeyView(*id_pack, &key) || !lent_.Release(key, count)) {
    RaiseKeyError(*id_pack);
    return ExceptionOutcome();
  }
  // The boxed None, encoded once.
  static const auto* const kNone = new std::shared_ptr<const std::string>([] {
    auto bytes = std::make_shared<std::string>();
    brine::Encode(brine::MakeTuple({brine::Int(core::protocol::kLabelValue), brine::NoneType{}}),
                  bytes.get());
    return bytes;
  }());
  return Outcome::EncodedReply(*kNone);
}

}  // namespace classicd::objspace
