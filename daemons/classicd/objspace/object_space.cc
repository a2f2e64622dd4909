// The classic object space of one connection: its life cycle, Handle() (the entry of every
// request the peer sends) and the per-thread Python data that belongs to the connection. The
// file list of its other parts is in classic_object_space.h.

#include <Python.h>

#include <atomic>
#include <exception>
#include <memory>
#include <mutex>
#include <thread>
#include <utility>

#include "daemons/classicd/objspace/classic_object_space.h"
#include "daemons/classicd/objspace/credentials.h"
#include "daemons/classicd/objspace/internal.h"
#include "daemons/classicd/objspace/objspace.h"
#include "daemons/classicd/objspace/py_ref.h"
#include "libcore/brine/value.h"
#include "libcore/protocol/object_space.h"

namespace classicd::objspace {

namespace brine = core::brine;
using core::protocol::Generation;
using core::protocol::Handler;
using core::protocol::Outcome;

ClassicObjectSpace::ClassicObjectSpace(Interpreter::Support& support, core::protocol::Peer& peer,
                                       const AccessPolicy& policy)
    : sup_(support),
      peer_(peer),
      policy_(policy),
      maker_(std::this_thread::get_id()),
      spaces_(ThreadSpaceCount()) {
  spaces_->fetch_add(1);
}

bool ClassicObjectSpace::Init(bool classic_root) {
  PyRef pair =
      PyRef::Steal(PyObject_CallOneArg(sup_.make_root.get(), classic_root ? Py_True : Py_False));
  if (!pair || !PyTuple_Check(pair.get()) || PyTuple_GET_SIZE(pair.get()) != 2) return false;
  root_ = PyRef::Borrow(PyTuple_GET_ITEM(pair.get(), 0));
  conn_obj_ = PyRef::Borrow(PyTuple_GET_ITEM(pair.get(), 1));
  return true;
}

void ClassicObjectSpace::SetClassicCredentials(const Credentials& credentials) {
  PyRef set = PyRef::Steal(PyObject_GetAttrString(sup_.module.get(), "set_classic_credentials"));
  PyRef r = set ? PyRef::Steal(PyObject_CallFunctionObjArgs(set.get(), conn_obj_.get(),
                                                            credentials.object.get(), nullptr))
                : PyRef();
  if (!r) PyErr_Clear();
}

ClassicObjectSpace::~ClassicObjectSpace() {
  GilHold gil;
  OnDisconnect();
  root_.reset();
  conn_obj_.reset();
  proxy_conn_.reset();
  capsule_.reset();
  Py_CLEAR(thread_dict_);
  Py_CLEAR(thread_context_);
  if (spaces_->fetch_sub(1) == 1 && std::this_thread::get_id() == maker_) ResetThreadPython();
}

void ClassicObjectSpace::OnDisconnect() {
  GilHold gil;
  if (disconnected_) return;
  disconnected_ = true;
  if (link_ != nullptr) {
    link_->space = nullptr;  // no new Request() from here on (both under the GIL)
    link_->pending_dels.clear();
  }
  {
    // Requests still inside Request() use this space until they return. The engine fails their
    // waits when the connection ends (the caller ended it before calling this); they then need
    // the GIL to finish. Never called from inside a Request() (that would wait for itself).
    GilRelease nogil;
    std::unique_lock<std::mutex> lock(requests_mu_);
    requests_cv_.wait(lock, [&] { return requests_ == 0; });
  }
  // Objects' finalisers may run Python code; the table stays consistent while they do.
  lent_.Clear();
  if (proxy_conn_) {
    PyRef r = PyRef::Steal(PyObject_CallMethodNoArgs(proxy_conn_.get(), sup_.s_drop.get()));
    if (!r) PyErr_Clear();
  }
  if (conn_obj_) {
    if (PyObject_SetAttr(conn_obj_.get(), sup_.s_closed.get(), Py_True) < 0) PyErr_Clear();
  }
  if (root_ && conn_obj_) {
    PyRef r = PyRef::Steal(
        PyObject_CallMethodOneArg(root_.get(), sup_.s_on_disconnect.get(), conn_obj_.get()));
    if (!r) PyErr_Clear();
  }
}

void ClassicObjectSpace::SyncGeneration() {
  if (!proxy_conn_) return;
  int now = v6() ? 1 : 0;
  if (now == last_v6_) return;
  last_v6_ = now;
  if (PyObject_SetAttr(proxy_conn_.get(), sup_.s_v6.get(), now != 0 ? Py_True : Py_False) < 0) {
    PyErr_Clear();
  }
}

Outcome ClassicObjectSpace::Handle(Handler h, const brine::Value& boxed_args) {
  // Any thread: the serving one, or one that waits for a reply in Request() and reads the peer's
  // request meanwhile (the engine lets whoever reads serve what it reads).
  GilHold gil;
  // Only on a thread whose Python thread state the object space owns (a connection thread, a
  // pool worker), and only the outermost Handle() of this space at a time: a Python thread made by
  // user code that serves a request while it waits for a reply keeps its own thread data, as it
  // would under rpyc, and so does a second thread serving this space meanwhile.
  const bool swap = !data_in_ && OwnsThreadState();
  if (swap) {
    SwapThreadData();  // the connection's threading.local data and context in
    data_in_ = true;
  }
  Outcome out;
  try {
    SyncGeneration();
    if (h == Handler::kDel) {
      out = HandleDel(boxed_args);
    } else {
      PyRef args = Unbox(boxed_args);
      if (args && !PyTuple_Check(args.get())) {
        PyErr_SetString(PyExc_TypeError, "handler arguments must be a tuple");
        out = ExceptionOutcome();
      } else if (!args) {
        out = ExceptionOutcome();
      } else if (h == Handler::kInspect) {
        out = Inspect(args.get());
      } else {
        PyRef result = Dispatch(h, args.get());
        out = result ? BoxReply(result.get()) : ExceptionOutcome();
      }
    }
  } catch (const std::exception& e) {
    PyErr_SetString(PyExc_RuntimeError, e.what());
    out = ExceptionOutcome();
  }
  FlushDels();
  if (swap) {
    SwapThreadData();  // and out again
    data_in_ = false;
  }
  return out;
}

// A connection is one logical thread, whichever OS thread serves a request of it (threadpool
// mode, reused threads): what Python code keeps per thread — threading.local data (the thread
// state's dict) and the contextvars context — is the connection's own while its requests run.
void ClassicObjectSpace::SwapThreadData() {
  PyThreadState* ts = PyThreadState_Get();
  std::swap(ts->dict, thread_dict_);
  std::swap(ts->context, thread_context_);
  ts->context_ver++;  // ContextVar.get() caches by this version
}

std::unique_ptr<core::protocol::ObjectSpace> MakeClassicObjectSpace(
    Interpreter& interpreter, core::protocol::Peer& peer, RootService root,
    const CredentialsPtr& credentials) {
  GilHold gil;
  auto space = std::make_unique<ClassicObjectSpace>(interpreter.support(), peer,
                                                    *interpreter.support().classic_policy);
  if (!space->Init(root == RootService::kClassic)) {
    // Only on out-of-memory-like failures; the space still answers, with exceptions.
    PyErr_Clear();
  } else if (credentials) {
    space->SetClassicCredentials(*credentials);
  }
  return space;
}

}  // namespace classicd::objspace
