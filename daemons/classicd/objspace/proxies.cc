// Proxies for the client's objects (docs/protocol.md §8): the ProxyConn they share
// (support_proxies.py), the requests they send through the connection, the DELs of dead ones, and
// the _classicd_native module through which Python reaches this file.

#include <Python.h>

#include <exception>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "daemons/classicd/objspace/classic_object_space.h"
#include "daemons/classicd/objspace/convert.h"
#include "daemons/classicd/objspace/internal.h"
#include "daemons/classicd/objspace/py_ref.h"
#include "libcore/brine/value.h"
#include "libcore/protocol/consts.h"
#include "libcore/protocol/object_space.h"

namespace classicd::objspace {

namespace brine = core::brine;
using core::protocol::Handler;
using core::protocol::Outcome;

namespace {

constexpr const char* kCapsuleName = "classicd.link";

void DestroyLink(PyObject* capsule) {
  std::unique_ptr<Link> owned(static_cast<Link*>(PyCapsule_GetPointer(capsule, kCapsuleName)));
}

Link* LinkOf(PyObject* capsule) {
  return static_cast<Link*>(PyCapsule_GetPointer(capsule, kCapsuleName));
}

}  // namespace

// Made on first use: most connections never receive an object of the client's.
PyObject* ClassicObjectSpace::Proxies() {
  if (proxy_conn_) return proxy_conn_.get();
  auto link = std::make_unique<Link>();
  link->space = disconnected_ ? nullptr : this;
  capsule_ = PyRef::Steal(PyCapsule_New(link.get(), kCapsuleName, &DestroyLink));
  if (!capsule_) return nullptr;
  link_ = link.release();  // owned by the capsule from here on
  proxy_conn_ = PyRef::Steal(PyObject_CallOneArg(sup_.proxy_conn_class.get(), capsule_.get()));
  if (!proxy_conn_) return nullptr;
  last_v6_ = -1;
  SyncGeneration();
  return proxy_conn_.get();
}

bool ClassicObjectSpace::IsOurNetref(PyObject* o) {
  if (!proxy_conn_) return false;
  if (!PyObject_TypeCheck(o, reinterpret_cast<PyTypeObject*>(sup_.base_netref.get()))) {
    return false;
  }
  PyRef conn = PyRef::Steal(PyObject_GetAttr(o, sup_.s_conn_attr.get()));
  if (!conn) {
    PyErr_Clear();
    return false;
  }
  return conn.get() == proxy_conn_.get();
}

void ClassicObjectSpace::FlushDels() {
  if (link_ == nullptr || link_->pending_dels.empty() || disconnected_) return;
  std::vector<brine::Value> dels = std::move(link_->pending_dels);
  link_->pending_dels.clear();
  GilRelease nogil;
  for (auto& d : dels) {
    (void)peer_.Notify(Handler::kDel, std::move(d));
  }
}

PyRef ClassicObjectSpace::Request(int handler, PyObject* args) {
  if (disconnected_) {
    PyErr_SetString(PyExc_EOFError, "connection closed");
    return PyRef();
  }
  // Any thread may use a proxy: the engine hands each reply to the thread that waits for it, and
  // a waiting thread reads and serves the client's requests when nobody else does. Counted until
  // it leaves (with the GIL held on both ends), see OnDisconnect().
  {
    std::lock_guard<std::mutex> lock(requests_mu_);
    ++requests_;
  }
  struct Leave {
    ClassicObjectSpace* self;
    ~Leave() {
      std::lock_guard<std::mutex> lock(self->requests_mu_);
      if (--self->requests_ == 0) self->requests_cv_.notify_all();
    }
  } leave{this};
  if (handler < core::protocol::kFirstHandler || handler > core::protocol::kLastHandler) {
    PyErr_SetString(PyExc_ValueError, "bad handler");
    return PyRef();
  }
  FlushDels();
  std::vector<IdKey> added;
  brine::Value boxed;
  if (!Box(args, &boxed, &added)) {
    lent_.Rollback(added);
    return PyRef();
  }
  core::Result<Outcome> r = core::Fail(core::Error::Closed("not sent"));
  {
    GilRelease nogil;
    r = peer_.Call(static_cast<Handler>(handler), std::move(boxed), request_timeout_ms_);
  }
  if (!r) {
    const core::Error& e = r.error();
    const std::string& m = e.message();
    if (e.code() == core::Error::Code::kClosed || e.code() == core::Error::Code::kIo) {
      PyErr_SetString(PyExc_EOFError, m.c_str());
    } else if (e.code() == core::Error::Code::kLimit || m.find("expired") != std::string::npos) {
      PyErr_SetString(PyExc_TimeoutError, "result expired");
    } else {
      PyErr_SetString(PyExc_ConnectionError, m.c_str());
    }
    return PyRef();
  }
  const brine::Value* value = r->value.tree();  // the engine's replies are decoded trees
  if (value == nullptr) {
    PyErr_SetString(PyExc_ConnectionError, "reply not decoded");
    return PyRef();
  }
  if (r->kind == Outcome::Kind::kReply) return Unbox(*value);
  RaiseRemote(*value);
  return PyRef();
}

namespace {

// request(handle, handler, args) -> unboxed reply, or raises the client's exception.
PyObject* NativeRequest(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
  if (nargs != 3 || !PyTuple_Check(args[2])) {
    PyErr_SetString(PyExc_TypeError, "request(handle, handler, args_tuple)");
    return nullptr;
  }
  Link* link = LinkOf(args[0]);
  if (link == nullptr) return nullptr;
  long handler = PyLong_AsLong(args[1]);
  if (handler == -1 && PyErr_Occurred()) return nullptr;
  if (link->space == nullptr) {
    PyErr_SetString(PyExc_EOFError, "connection closed");
    return nullptr;
  }
  try {  // C++ exceptions must not unwind through CPython frames (docs/embedding.md §3.5)
    return link->space->Request(static_cast<int>(handler), args[2]).release();
  } catch (const std::exception& e) {
    PyErr_SetString(PyExc_RuntimeError, e.what());
  } catch (...) {
    PyErr_SetString(PyExc_RuntimeError, "internal error");
  }
  return nullptr;
}

// queue_del(handle, id_pack, count): a proxy died; its DEL goes out from the connection thread.
// Runs on whatever thread dropped the proxy (docs/embedding.md §3.4), so it only queues.
PyObject* NativeQueueDel(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
  if (nargs != 3) {
    PyErr_SetString(PyExc_TypeError, "queue_del(handle, id_pack, count)");
    return nullptr;
  }
  Link* link = LinkOf(args[0]);
  if (link == nullptr) return nullptr;
  if (link->space == nullptr) Py_RETURN_NONE;
  brine::Value idp, count;
  if (ToValue(args[1], &idp) != Dump::kOk || ToValue(args[2], &count) != Dump::kOk) {
    if (!PyErr_Occurred()) PyErr_SetString(PyExc_TypeError, "bad id_pack or count");
    return nullptr;
  }
  try {
    link->pending_dels.push_back(brine::MakeTuple(
        {brine::Int(core::protocol::kLabelTuple),
         brine::MakeTuple(
             {brine::MakeTuple({brine::Int(core::protocol::kLabelLocalRef), std::move(idp)}),
              brine::MakeTuple({brine::Int(core::protocol::kLabelValue), std::move(count)})})}));
  } catch (...) {
    PyErr_NoMemory();
    return nullptr;
  }
  Py_RETURN_NONE;
}

// close(handle): a hosted service's conn.close() (ClassicObjectSpace::Close()).
PyObject* NativeClose(PyObject*, PyObject* handle) {
  Link* link = LinkOf(handle);
  if (link == nullptr) return nullptr;
  if (link->space != nullptr) link->space->Close();
  Py_RETURN_NONE;
}

// encodable(obj): whether obj goes by value and can be encoded.
PyObject* NativeEncodable(PyObject*, PyObject* arg) {
  brine::Value v;
  Dump d = ToValue(arg, &v);
  if (d == Dump::kError) PyErr_Clear();
  return PyBool_FromLong(d == Dump::kOk ? 1 : 0);
}

PyMethodDef kNativeMethods[] = {
    {"request", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(&NativeRequest)),
     METH_FASTCALL, "Send a request to the client and wait for the reply."},
    {"queue_del", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(&NativeQueueDel)),
     METH_FASTCALL, "Queue a DEL for a dead proxy."},
    {"encodable", &NativeEncodable, METH_O, "Whether a value goes by value and encodes."},
    {"close", &NativeClose, METH_O, "Close the connection (a hosted service's conn.close())."},
    {nullptr, nullptr, 0, nullptr}};

PyModuleDef kNativeModule = {PyModuleDef_HEAD_INIT,
                             "_classicd_native",
                             "Native half of the classicd object space.",
                             -1,
                             kNativeMethods,
                             nullptr,
                             nullptr,
                             nullptr,
                             nullptr};

}  // namespace

PyObject* InitNativeModule() { return PyModule_Create(&kNativeModule); }

}  // namespace classicd::objspace
