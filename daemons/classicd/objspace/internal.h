#pragma once

// Shared between the files of the object space; needs <Python.h>.

#include <Python.h>

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "daemons/classicd/objspace/access_policy.h"
#include "daemons/classicd/objspace/objspace.h"
#include "daemons/classicd/objspace/py_ref.h"
#include "libcore/brine/value.h"

namespace classicd::objspace {

// INSPECT results depend only on the classes involved (§5.3), so they are cached by class and
// version tag: CPython gives a class a new tag whenever it or a base class changes.
struct MethodsKey {
  PyTypeObject* type = nullptr;  // type(obj)
  unsigned type_tag = 0;
  PyTypeObject* cls = nullptr;  // obj itself when it is a class
  unsigned cls_tag = 0;
  bool v6 = false;
  bool operator==(const MethodsKey&) const = default;
};
struct MethodsKeyHash {
  size_t operator()(const MethodsKey& k) const {
    size_t h = std::hash<const void*>()(k.type) ^ (std::hash<const void*>()(k.cls) << 1);
    return h ^ (static_cast<size_t>(k.type_tag) << 7) ^ (static_cast<size_t>(k.cls_tag) << 29) ^
           static_cast<size_t>(k.v6);
  }
};

using EncodedPtr = std::shared_ptr<const std::string>;

// Python objects every object space uses, made once at interpreter start. Released (with the GIL)
// before Py_FinalizeEx. Used only with the GIL held.
struct Interpreter::Support {
  PyRef module;  // _classicd_support (support_*.py)
  PyRef get_methods, dump_exc, load_exc, make_root, proxy_conn_class, base_netref;
  PyRef load_exc_hosted, propagate_exc;  // a hosted service's exception paths (vinegar.cc)
  PyRef ctxexit, instancecheck, pickle_dumps;
  // The frame of the client's calls (handlers.cc, docs/embedding.md §3.7).
  PyRef call0, call, call_kw;
  // Interned names.
  PyRef s_proxy, s_drop, s_conn_attr, s_id_pack_attr, s_v6, s_on_disconnect, s_closed, s_exit,
      s_cmp, s_class, s_module, s_name;
  PyRef object_class_descr;  // object.__dict__['__class__']
  // The classic service's access policy (every attribute, every operation, pickle).
  std::unique_ptr<AccessPolicy> classic_policy;
  // INSPECT replies, already brine-encoded for the wire (converting a method list with its
  // docstrings cost more than the rest of a connection's handshake; copying the boxed list into
  // each reply and encoding it again still cost ~25k instructions per connection).
  std::unordered_map<MethodsKey, EncodedPtr, MethodsKeyHash> methods_cache;
};

// A hosted rpyc.Service (objspace.h). Its PyRefs are released with the GIL (hosting.cc).
struct HostedService {
  Interpreter* interpreter = nullptr;
  PyRef make_root;  // () -> a root instance: the class, or a function giving the shared instance
  PyRef make_conn;  // support_hosting.py's make_hosted_root: (root, conn) of a new connection
  PyRef config;     // conn._config's base: rpyc's DEFAULT_CONFIG with the service's keys
  std::unique_ptr<AccessPolicy> policy;
  // Its [protocol] keys as given; the exception keys are read from here when an exception crosses
  // a connection (vinegar.cc). The classic service has none (its rules are fixed: protocol.md §6).
  ProtocolConfig protocol;
  std::vector<std::string> aliases;
  int request_timeout_ms = 30000;  // sync_request_timeout (None: the largest wait)
};

// The config keys a ProtocolConfig sets, as the dict rpyc's Connection reads (NULL + Python error
// on failure).
PyRef ProtocolConfigDict(const ProtocolConfig& config);

// The source of the support module (support_*.py, joined by CMake).
extern const char kSupportSource[];

// Module init of _classicd_native (proxies.cc); registered with PyImport_AppendInittab.
PyObject* InitNativeModule();

// Connections per thread (interpreter.cc). The thread that makes an object space keeps its
// Python thread state for its whole life (no per-connection thread-state churn when a server
// reuses threads), so what Python code keeps per thread must not outlive a connection: when the
// last object space made on a thread is destroyed on that thread, ResetThreadPython() runs there.
// Returns the calling thread's count of live object spaces made on it (shared, so that a space
// destroyed on another thread can still decrement it).
std::shared_ptr<std::atomic<int>> ThreadSpaceCount();
// GIL held. Forgets the calling thread's per-thread Python state: threading.local data (the
// thread state's dict), the contextvars context, trace and profile functions, a pending
// asynchronous exception, and the threading module's dummy Thread object for this thread.
void ResetThreadPython();

// True when the current thread's Python thread state is one GilHold made and keeps (a thread the
// daemon started), not one Python made (threading.Thread) or the interpreter's main one.
bool OwnsThreadState();

// The text of the pending Python exception (clears it), for errors reported to C++.
std::string FetchErrorText();
// The same for the support module's loaders (load_service, load_authenticator): a
// ServiceLoadError's text alone (it is the whole message), any other exception with its traceback
// (hosting.cc).
std::string LoadErrorText(PyObject* support_module);

}  // namespace classicd::objspace
