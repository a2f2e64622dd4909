// The frame of serving_frame.h: CPython 3.11's frame internals are read here only.

#include "daemons/classicd/objspace/serving_frame.h"
#include <Python.h>

#define Py_BUILD_CORE 1
#include <internal/pycore_frame.h>
#undef Py_BUILD_CORE

#include "daemons/classicd/objspace/internal.h"
#include "daemons/classicd/objspace/py_ref.h"

namespace classicd::objspace {

bool MakeServingFrame(Interpreter::Support* sup) {
  PyRef fn = PyRef::Steal(PyObject_GetAttrString(sup->module.get(), "serving_anchor"));
  // Called from C with no frame on the thread: the kept frame has no previous frame (f_back None).
  PyRef frame = fn ? PyRef::Steal(PyObject_CallNoArgs(fn.get())) : PyRef();
  if (!frame) return false;
  if (!PyFrame_Check(frame.get())) {
    PyErr_SetString(PyExc_TypeError, "serving_anchor() must return its frame");
    return false;
  }
  _PyInterpreterFrame* f = reinterpret_cast<PyFrameObject*>(frame.get())->f_frame;
  // After the call returned the frame object owns its data, which stays put as long as it lives.
  if (f->owner != FRAME_OWNED_BY_FRAME_OBJECT || f->previous != nullptr) {
    PyErr_SetString(PyExc_RuntimeError, "serving_anchor()'s frame is not a kept frame");
    return false;
  }
  sup->serving_iframe = f;
  sup->serving_locals = &f->f_locals;
  sup->serving_frame = std::move(frame);
  return true;
}

}  // namespace classicd::objspace
