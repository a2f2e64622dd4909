// Vinegar (docs/protocol.md §6): a Python exception as the peer's exception reply (dump_exc in
// support_vinegar.py), and the peer's exception reply raised here (load_exc; load_exc_hosted
// under a hosted service's exception keys of ProtocolConfig). The classic service pays nothing for
// the rules: one null test on the exception path.

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

namespace {

// rpyc's _remote_version when include_local_version is false.
constexpr const char kVersionDenied[] = "<version denied>";

}  // namespace

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
  const ProtocolConfig* rules = exception_rules_;
  if (rules != nullptr && PropagatesLocally(type.get())) {
    // The connection is closed: the reply made below goes nowhere (as conn.close() in a request).
    PropagateLocally(type.get(), value.get(), trace.get());
  }
  const bool with_version = rules == nullptr || rules->include_local_version;
  const bool with_traceback = rules == nullptr || rules->include_local_traceback;
  PyRef ver = PyRef::Steal(PyUnicode_FromString(with_version ? version() : kVersionDenied));
  PyRef dumped;
  if (ver) {
    dumped = PyRef::Steal(PyObject_CallFunctionObjArgs(
        sup_.dump_exc.get(), type.get(), value ? value.get() : Py_None,
        trace ? trace.get() : Py_None, ver.get(), conn_obj_ ? conn_obj_.get() : Py_None,
        with_traceback ? Py_True : Py_False, nullptr));
  }
  brine::Value out;
  if (dumped && ToValue(dumped.get(), &out) == Dump::kOk) return Outcome::Exception(std::move(out));
  PyErr_Clear();
  // Could not describe the exception: say so rather than drop the connection.
  return Outcome::Exception(brine::MakeTuple(
      {brine::MakeTuple({brine::MakeStr("builtins"), brine::MakeStr("RuntimeError")}),
       brine::MakeTuple({brine::MakeStr("the server could not encode an exception")}),
       brine::MakeTuple(
           {brine::MakeTuple({brine::MakeStr("_remote_version"),
                              brine::MakeStr(with_version ? version() : kVersionDenied)})}),
       brine::MakeStr("")}));
}

void ClassicObjectSpace::RaiseRemote(const brine::Value& raw_value) {
  PyRef raw = ToPython(raw_value);
  if (!raw) return;
  const ProtocolConfig* rules = exception_rules_;
  PyRef exc = rules == nullptr
                  ? PyRef::Steal(PyObject_CallOneArg(sup_.load_exc.get(), raw.get()))
                  : PyRef::Steal(PyObject_CallFunctionObjArgs(
                        sup_.load_exc_hosted.get(), raw.get(),
                        rules->import_custom_exceptions ? Py_True : Py_False,
                        rules->instantiate_custom_exceptions ? Py_True : Py_False, nullptr));
  if (!exc) return;
  PyErr_SetObject(reinterpret_cast<PyObject*>(Py_TYPE(exc.get())), exc.get());
}

bool ClassicObjectSpace::PropagatesLocally(PyObject* type) const {
  // Exactly these classes, not subclasses (rpyc compares with `is`).
  const ProtocolConfig& r = *exception_rules_;
  return (type == PyExc_SystemExit && r.propagate_SystemExit_locally) ||
         (type == PyExc_KeyboardInterrupt && r.propagate_KeyboardInterrupt_locally);
}

void ClassicObjectSpace::PropagateLocally(PyObject* type, PyObject* value, PyObject* trace) {
  // rpyc re-raises it in the server, which ends this connection's serve loop: the client gets
  // CLOSE and end of stream. Here it ends this connection alone (logged), never the daemon.
  PyRef r;
  if (conn_obj_) {
    r = PyRef::Steal(PyObject_CallFunctionObjArgs(sup_.propagate_exc.get(), conn_obj_.get(), type,
                                                  value != nullptr ? value : Py_None,
                                                  trace != nullptr ? trace : Py_None, nullptr));
  }
  if (!r) {
    PyErr_Clear();
    Close();
  }
}

}  // namespace classicd::objspace
