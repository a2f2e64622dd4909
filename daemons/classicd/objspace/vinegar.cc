// Vinegar (docs/protocol.md §6): a Python exception as the peer's exception reply (dump_exc in
// support_vinegar.py), and the peer's exception reply raised here (load_exc).

#include <Python.h>

#include "daemons/classicd/objspace/classic_object_space.h"
#include "daemons/classicd/objspace/convert.h"
#include "daemons/classicd/objspace/py_ref.h"
#include "libcore/brine/value.h"
#include "libcore/protocol/consts.h"
#include "libcore/protocol/object_space.h"

namespace classicd::objspace {

namespace brine = core::brine;
using core::protocol::Outcome;

Outcome ClassicObjectSpace::ExceptionOutcome() {
  PyObject *t = nullptr, *v = nullptr, *tb = nullptr;
  PyErr_Fetch(&t, &v, &tb);
  if (t == nullptr) {
    PyErr_SetString(PyExc_SystemError, "error return without exception set");
    PyErr_Fetch(&t, &v, &tb);
  }
  PyErr_NormalizeException(&t, &v, &tb);
  PyRef type = PyRef::Steal(t), value = PyRef::Steal(v), trace = PyRef::Steal(tb);
  if (trace && value) PyException_SetTraceback(value.get(), trace.get());
  if (type.get() == PyExc_StopIteration) {
    return Outcome::Exception(brine::Int(core::protocol::kExcStopIteration));
  }
  PyRef ver = PyRef::Steal(PyUnicode_FromString(version()));
  PyRef dumped;
  if (ver) {
    dumped = PyRef::Steal(PyObject_CallFunctionObjArgs(
        sup_.dump_exc.get(), type.get(), value ? value.get() : Py_None,
        trace ? trace.get() : Py_None, ver.get(), conn_obj_ ? conn_obj_.get() : Py_None, nullptr));
  }
  brine::Value out;
  if (dumped && ToValue(dumped.get(), &out) == Dump::kOk) return Outcome::Exception(std::move(out));
  PyErr_Clear();
  // Could not describe the exception: say so rather than drop the connection.
  return Outcome::Exception(brine::MakeTuple(
      {brine::MakeTuple({brine::MakeStr("builtins"), brine::MakeStr("RuntimeError")}),
       brine::MakeTuple({brine::MakeStr("the server could not encode an exception")}),
       brine::MakeTuple(
           {brine::MakeTuple({brine::MakeStr("_remote_version"), brine::MakeStr(version())})}),
       brine::MakeStr("")}));
}

void ClassicObjectSpace::RaiseRemote(const brine::Value& raw_value) {
  PyRef raw = ToPython(raw_value);
  if (!raw) return;
  PyRef exc = PyRef::Steal(PyObject_CallOneArg(sup_.load_exc.get(), raw.get()));
  if (!exc) return;
  PyErr_SetObject(reinterpret_cast<PyObject*>(Py_TYPE(exc.get())), exc.get());
}

}  // namespace classicd::objspace
