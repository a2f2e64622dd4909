#pragma once

// RAII for the embedded interpreter: PyRef owns one strong reference; GilHold takes the GIL on the
// calling thread with a thread state kept for the life of the thread (docs/embedding.md §2.2);
// GilRelease lets other threads run around a blocking wait (§3.1).

#include <Python.h>

#include <utility>

namespace classicd::objspace {

class PyRef {
 public:
  PyRef() = default;
  // From a new reference (most API results). NULL is allowed and means "failed".
  static PyRef Steal(PyObject* p) { return PyRef(p); }
  // From a borrowed reference: takes its own.
  static PyRef Borrow(PyObject* p) {
    Py_XINCREF(p);
    return PyRef(p);
  }
  PyRef(const PyRef&) = delete;
  PyRef& operator=(const PyRef&) = delete;
  PyRef(PyRef&& o) noexcept : p_(std::exchange(o.p_, nullptr)) {}
  PyRef& operator=(PyRef&& o) noexcept {
    PyObject* old = std::exchange(p_, std::exchange(o.p_, nullptr));
    Py_XDECREF(old);
    return *this;
  }
  ~PyRef() { Py_XDECREF(p_); }

  PyObject* get() const { return p_; }
  // Gives up ownership (for API that steals, such as PyTuple_SET_ITEM).
  PyObject* release() { return std::exchange(p_, nullptr); }
  // A new reference for the caller.
  PyObject* NewRef() const {
    Py_XINCREF(p_);
    return p_;
  }
  void reset() {
    PyObject* old = std::exchange(p_, nullptr);
    Py_XDECREF(old);
  }
  explicit operator bool() const { return p_ != nullptr; }

 private:
  explicit PyRef(PyObject* p) : p_(p) {}
  PyObject* p_ = nullptr;
};

// Holds the GIL for a scope. Re-entrant: when the calling thread already holds it, this is a
// no-op. The thread's state is created on first use and kept until the thread exits, so there is
// no per-call thread-state churn (docs/embedding.md §2.2).
class GilHold {
 public:
  GilHold();
  ~GilHold();
  GilHold(const GilHold&) = delete;
  GilHold& operator=(const GilHold&) = delete;
  GilHold(GilHold&&) = delete;
  GilHold& operator=(GilHold&&) = delete;

 private:
  bool took_ = false;
};

// Releases the GIL for a scope; the calling thread must hold it.
class GilRelease {
 public:
  GilRelease() : ts_(PyEval_SaveThread()) {}
  ~GilRelease() { PyEval_RestoreThread(ts_); }
  GilRelease(const GilRelease&) = delete;
  GilRelease& operator=(const GilRelease&) = delete;
  GilRelease(GilRelease&&) = delete;
  GilRelease& operator=(GilRelease&&) = delete;

 private:
  PyThreadState* ts_;
};

}  // namespace classicd::objspace
