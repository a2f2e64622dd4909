#pragma once

// The Python frame the peer's requests run in. A thread that serves a request from C++ has no
// Python frame, and builtins that read their caller's (eval, exec, globals, locals, vars, dir)
// then fail ("frame does not exist"); the Python server runs every call inside its own frames.
// ServingFrame makes a frame kept from support.py's serving_anchor() the thread's current frame
// for a scope when the thread has none: a pointer swap, no call into Python. Needs <Python.h>.

#include <Python.h>

#include "daemons/classicd/objspace/internal.h"

namespace classicd::objspace {

// Sets sup->serving_frame, serving_iframe and serving_locals. GIL held; false: a Python error.
bool MakeServingFrame(Interpreter::Support* sup);

// GIL held, for the scope of one request.
class ServingFrame {
 public:
  explicit ServingFrame(const Interpreter::Support& sup) {
    _PyCFrame* cf = PyThreadState_Get()->cframe;
    if (cf->current_frame != nullptr) return;  // Python code runs below us: its frame serves
    cf->current_frame = static_cast<struct _PyInterpreterFrame*>(sup.serving_iframe);
    cframe_ = cf;
    locals_ = sup.serving_locals;
  }
  ~ServingFrame() {
    if (cframe_ == nullptr) return;
    cframe_->current_frame = nullptr;
    // What exec() or locals() left in the frame's locals is this request's only (the Python
    // server's frames are new for each request), not the next one's on this or another thread.
    Py_CLEAR(*locals_);
  }
  ServingFrame(const ServingFrame&) = delete;
  ServingFrame& operator=(const ServingFrame&) = delete;
  ServingFrame(ServingFrame&&) = delete;
  ServingFrame& operator=(ServingFrame&&) = delete;

 private:
  _PyCFrame* cframe_ = nullptr;
  PyObject** locals_ = nullptr;
};

}  // namespace classicd::objspace
