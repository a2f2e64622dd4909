// The classic object space: boxing (PROTOCOL.md §4), the table of objects lent to the peer (§4.3),
// the 20 handlers with SlaveService semantics (§5), vinegar (§6) and the requests our proxies for
// the client's objects send (§8). Python-heavy cold paths live in support.py.

#include <Python.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "daemons/classicd/objspace/convert.h"
#include "daemons/classicd/objspace/internal.h"
#include "daemons/classicd/objspace/objspace.h"
#include "daemons/classicd/objspace/py_ref.h"
#include "libcore/brine/brine.h"
#include "libcore/protocol/consts.h"
#include "libcore/protocol/object_space.h"

namespace classicd::objspace {
namespace {

namespace brine = core::brine;
using core::protocol::Generation;
using core::protocol::Handler;
using core::protocol::Outcome;

constexpr const char* kVersion5 = "5.3.0";
constexpr const char* kVersion6 = "6.0.1";

// An id_pack (§4.2) as a table key.
struct IdKey {
  std::string name;
  int64_t class_id = 0;
  int64_t instance_id = 0;
  bool operator==(const IdKey&) const = default;
};
struct IdKeyHash {
  size_t operator()(const IdKey& k) const {
    size_t h = std::hash<std::string>()(k.name);
    h ^= std::hash<int64_t>()(k.class_id) + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2);
    h ^= std::hash<int64_t>()(k.instance_id) + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2);
    return h;
  }
};

brine::Value KeyToValue(const IdKey& k) {
  return brine::TupleOf(brine::MakeStr(k.name), brine::Int(k.class_id), brine::Int(k.instance_id));
}

// Encode() of KeyToValue(k).
void EncodeKey(const IdKey& k, std::string* out) {
  brine::EncodeTupleHeader(3, out);
  brine::EncodeStr(k.name, out);
  brine::EncodeInt(brine::Int(k.class_id), out);
  brine::EncodeInt(brine::Int(k.instance_id), out);
}

bool ValueToKey(const brine::Value& v, IdKey* key) {
  const auto* t = v.get_if<brine::Tuple>();
  if (t == nullptr || t->items.size() != 3) return false;
  const auto* name = t->items[0].get_if<brine::Str>();
  const auto* cls = t->items[1].get_if<brine::Int>();
  const auto* inst = t->items[2].get_if<brine::Int>();
  if (name == nullptr || cls == nullptr || inst == nullptr || !cls->is_small() ||
      !inst->is_small()) {
    return false;
  }
  *key = IdKey{name->utf8, cls->small(), inst->small()};
  return true;
}

int64_t Id(PyObject* o) { return static_cast<int64_t>(reinterpret_cast<intptr_t>(o)); }

bool SmallInt(const brine::Value& v, int64_t* out) {
  const auto* i = v.get_if<brine::Int>();
  if (i == nullptr || !i->is_small()) return false;
  *out = i->small();
  return true;
}

// Raises KeyError(id_pack) as the reference does for an unknown LOCAL_REF.
void RaiseKeyError(const brine::Value& id_pack) {
  PyRef key = ToPython(id_pack);
  if (key) PyErr_SetObject(PyExc_KeyError, key.get());
}

PyRef CheckArgs(PyObject* args, Py_ssize_t min, Py_ssize_t max, const char* handler) {
  Py_ssize_t n = PyTuple_GET_SIZE(args);
  if (n < min || n > max) {
    PyErr_Format(PyExc_TypeError, "%s handler takes %zd to %zd arguments (%zd given)", handler, min,
                 max, n);
    return PyRef();
  }
  return PyRef::Borrow(args);
}

// Attribute names: str, or bytes decoded as UTF-8 (§5.1).
PyRef AttrName(PyObject* name) {
  if (PyUnicode_Check(name)) return PyRef::Borrow(name);
  if (PyBytes_Check(name)) {
    return PyRef::Steal(
        PyUnicode_DecodeUTF8(PyBytes_AS_STRING(name), PyBytes_GET_SIZE(name), "strict"));
  }
  PyErr_SetString(PyExc_TypeError, "name must be a string");
  return PyRef();
}

struct Link;

class ClassicObjectSpace final : public core::protocol::ObjectSpace {
 public:
  ClassicObjectSpace(Interpreter::Support& support, core::protocol::Peer& peer)
      : sup_(support),
        peer_(peer),
        maker_(std::this_thread::get_id()),
        spaces_(ThreadSpaceCount()) {
    spaces_->fetch_add(1);
  }
  ~ClassicObjectSpace() override;
  ClassicObjectSpace(const ClassicObjectSpace&) = delete;
  ClassicObjectSpace& operator=(const ClassicObjectSpace&) = delete;
  ClassicObjectSpace(ClassicObjectSpace&&) = delete;
  ClassicObjectSpace& operator=(ClassicObjectSpace&&) = delete;

  bool Init(bool classic_root);  // GIL held
  Outcome Handle(Handler h, const brine::Value& boxed_args) override;
  void OnDisconnect() override;
  size_t LocalObjectCount() const override { return table_.size(); }

  // A request from one of our proxies to the client (GIL held). NULL + Python error on failure.
  PyRef Request(int handler, PyObject* args);

 private:
  struct Entry {
    PyRef obj;
    int64_t refs = 0;
  };

  bool v6() const { return peer_.generation() == Generation::kV6; }
  const char* version() const { return v6() ? kVersion6 : kVersion5; }

  // Boxing. False means a Python error is set; `added` collects the table keys added, so that a
  // failed reply can be rolled back. BoxEncoded() appends the brine encoding of what Box() makes.
  bool Box(PyObject* o, brine::Value* out, std::vector<IdKey>* added, int depth = 0);
  bool BoxEncoded(PyObject* o, std::string* out, std::vector<IdKey>* added, int depth = 0);
  // How `o` is boxed: by value (into `value`), as a tuple of boxed items (at `depth`), as the
  // client's own object (its id_pack into `value`) or as ours (its id_pack into `key`, lent:
  // counted in the table and added to `added`). kError: a Python error is set.
  enum class BoxAs { kError, kValue, kTuple, kLocalRef, kRemoteRef };
  BoxAs Classify(PyObject* o, brine::Value* value, IdKey* key, std::vector<IdKey>* added,
                 int depth);
  // BoxEncoded() once `o` is classified (not kError).
  bool AppendBoxed(PyObject* o, BoxAs as, const brine::Value& v, const IdKey& key, std::string* out,
                   std::vector<IdKey>* added, int depth);
  bool MakeIdPack(PyObject* o, IdKey* key);
  void Rollback(const std::vector<IdKey>& added);
  PyRef Unbox(const brine::Value& boxed);
  PyRef LookupLocal(const brine::Value& id_pack);
  Outcome BoxReply(PyObject* result);
  Outcome ExceptionOutcome();
  Outcome HandleDel(const brine::Value& boxed_args);
  PyRef Dispatch(Handler h, PyObject* args);
  PyRef AccessAttr(PyObject* obj, PyObject* raw_name, PyObject* hook_name, PyObject* value,
                   int mode);
  PyRef Call(PyObject* fn, PyObject* args, PyObject* kwargs);
  Outcome Inspect(PyObject* args);
  void FlushDels();
  void SyncGeneration();
  bool IsOurNetref(PyObject* o);
  void SwapThreadData();
  PyObject* Proxies();  // borrowed; NULL + Python error on failure

  Interpreter::Support& sup_;
  core::protocol::Peer& peer_;
  PyRef root_, conn_obj_, proxy_conn_, capsule_;
  Link* link_ = nullptr;  // owned by capsule_
  std::unordered_map<IdKey, Entry, IdKeyHash> table_;
  // Request()s in progress, on any thread: a Python thread other than the serving one may still
  // wait for its reply, or unbox it, when the connection ends. OnDisconnect() waits for them to
  // leave before it tears the space down.
  std::mutex requests_mu_;
  std::condition_variable requests_cv_;
  int requests_ = 0;  // guarded by requests_mu_
  bool disconnected_ = false;
  int last_v6_ = -1;
  bool data_in_ = false;                // under the GIL: a Handle() has swapped the thread data in
  PyObject* thread_dict_ = nullptr;     // owned; see SwapThreadData()
  PyObject* thread_context_ = nullptr;  // owned
  std::thread::id maker_;               // the thread that made this space
  std::shared_ptr<std::atomic<int>> spaces_;  // maker_'s ThreadSpaceCount()
};

// What a proxy reaches its connection through. Owned by a capsule that the ProxyConn holds, so
// proxies that outlive their connection find `space == nullptr` instead of a dangling pointer.
struct Link {
  ClassicObjectSpace* space = nullptr;
  std::vector<brine::Value> pending_dels;  // boxed DEL args, sent from the connection's thread
};

constexpr const char* kCapsuleName = "classicd.link";

void DestroyLink(PyObject* capsule) {
  std::unique_ptr<Link> owned(static_cast<Link*>(PyCapsule_GetPointer(capsule, kCapsuleName)));
}

Link* LinkOf(PyObject* capsule) {
  return static_cast<Link*>(PyCapsule_GetPointer(capsule, kCapsuleName));
}

// ---------------------------------------------------------------------------------------------

bool ClassicObjectSpace::Init(bool classic_root) {
  PyRef pair =
      PyRef::Steal(PyObject_CallOneArg(sup_.make_root.get(), classic_root ? Py_True : Py_False));
  if (!pair || !PyTuple_Check(pair.get()) || PyTuple_GET_SIZE(pair.get()) != 2) return false;
  root_ = PyRef::Borrow(PyTuple_GET_ITEM(pair.get(), 0));
  conn_obj_ = PyRef::Borrow(PyTuple_GET_ITEM(pair.get(), 1));
  return true;
}

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
  // Objects' finalisers may run Python code; keep the table consistent while they do.
  auto table = std::move(table_);
  table_.clear();
  table.clear();
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

// --- boxing ----------------------------------------------------------------------------------

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

ClassicObjectSpace::BoxAs ClassicObjectSpace::Classify(PyObject* o, brine::Value* value, IdKey* key,
                                                       std::vector<IdKey>* added, int depth) {
  switch (ToValue(o, value)) {
    case Dump::kOk:
      return BoxAs::kValue;
    case Dump::kError:
      return BoxAs::kError;
    case Dump::kNotDumpable:
      break;
  }
  if (PyTuple_CheckExact(o)) {
    if (depth >= kMaxNesting) {
      PyErr_Format(PyExc_RecursionError, "value nested deeper than %d levels", kMaxNesting);
      return BoxAs::kError;
    }
    return BoxAs::kTuple;
  }
  if (IsOurNetref(o)) {
    PyRef idp = PyRef::Steal(PyObject_GetAttr(o, sup_.s_id_pack_attr.get()));
    if (!idp || ToValue(idp.get(), value) != Dump::kOk) {
      if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "bad proxy id_pack");
      return BoxAs::kError;
    }
    return BoxAs::kLocalRef;
  }
  if (!MakeIdPack(o, key)) return BoxAs::kError;
  auto [it, inserted] = table_.try_emplace(*key);
  if (inserted) it->second.obj = PyRef::Borrow(o);
  it->second.refs += 1;
  added->push_back(*key);
  return BoxAs::kRemoteRef;
}

bool ClassicObjectSpace::Box(PyObject* o, brine::Value* out, std::vector<IdKey>* added, int depth) {
  brine::Value v;
  IdKey key;
  switch (Classify(o, &v, &key, added, depth)) {
    case BoxAs::kError:
      return false;
    case BoxAs::kValue:
      *out = brine::TupleOf(brine::Int(core::protocol::kLabelValue), std::move(v));
      return true;
    case BoxAs::kLocalRef:
      *out = brine::TupleOf(brine::Int(core::protocol::kLabelLocalRef), std::move(v));
      return true;
    case BoxAs::kRemoteRef:
      *out = brine::TupleOf(brine::Int(core::protocol::kLabelRemoteRef), KeyToValue(key));
      return true;
    case BoxAs::kTuple:
      break;
  }
  brine::Tuple items;
  Py_ssize_t n = PyTuple_GET_SIZE(o);
  items.items.reserve(static_cast<size_t>(n));
  for (Py_ssize_t i = 0; i < n; ++i) {
    brine::Value item;
    if (!Box(PyTuple_GET_ITEM(o, i), &item, added, depth + 1)) return false;
    items.items.push_back(std::move(item));
  }
  *out = brine::TupleOf(brine::Int(core::protocol::kLabelTuple), std::move(items));
  return true;
}

bool ClassicObjectSpace::BoxEncoded(PyObject* o, std::string* out, std::vector<IdKey>* added,
                                    int depth) {
  brine::Value v;
  IdKey key;
  const BoxAs as = Classify(o, &v, &key, added, depth);
  return as != BoxAs::kError && AppendBoxed(o, as, v, key, out, added, depth);
}

bool ClassicObjectSpace::AppendBoxed(PyObject* o, BoxAs as, const brine::Value& v, const IdKey& key,
                                     std::string* out, std::vector<IdKey>* added, int depth) {
  // The bytes Encode() gives for Box()'s value: (label, payload).
  brine::EncodeTupleHeader(2, out);
  switch (as) {
    case BoxAs::kError:
      return false;
    case BoxAs::kValue:
      brine::EncodeInt(brine::Int(core::protocol::kLabelValue), out);
      brine::Encode(v, out);
      return true;
    case BoxAs::kLocalRef:
      brine::EncodeInt(brine::Int(core::protocol::kLabelLocalRef), out);
      brine::Encode(v, out);
      return true;
    case BoxAs::kRemoteRef:
      brine::EncodeInt(brine::Int(core::protocol::kLabelRemoteRef), out);
      EncodeKey(key, out);
      return true;
    case BoxAs::kTuple:
      break;
  }
  brine::EncodeInt(brine::Int(core::protocol::kLabelTuple), out);
  const Py_ssize_t n = PyTuple_GET_SIZE(o);
  brine::EncodeTupleHeader(static_cast<size_t>(n), out);
  for (Py_ssize_t i = 0; i < n; ++i) {
    if (!BoxEncoded(PyTuple_GET_ITEM(o, i), out, added, depth + 1)) return false;
  }
  return true;
}

void ClassicObjectSpace::Rollback(const std::vector<IdKey>& added) {
  for (const auto& key : added) {
    auto it = table_.find(key);
    if (it == table_.end()) continue;
    if (--it->second.refs <= 0) {
      Entry dead = std::move(it->second);
      table_.erase(it);
    }
  }
}

namespace {

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

// id_pack rules of §4.2, per generation.
bool ClassicObjectSpace::MakeIdPack(PyObject* o, IdKey* key) {
  if (PyObject_TypeCheck(o, reinterpret_cast<PyTypeObject*>(sup_.base_netref.get()))) {
    // A proxy of another connection, re-exported: its id_pack unchanged.
    PyRef idp = PyRef::Steal(PyObject_GetAttr(o, sup_.s_id_pack_attr.get()));
    brine::Value v;
    if (!idp || ToValue(idp.get(), &v) != Dump::kOk || !ValueToKey(v, key)) {
      if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "bad proxy id_pack");
      return false;
    }
    return true;
  }
  PyObject* type = reinterpret_cast<PyObject*>(Py_TYPE(o));
  PyObject* s_module = sup_.s_module.get();
  PyObject* s_name = sup_.s_name.get();
  key->class_id = Id(type);
  key->instance_id = Id(o);
  std::string& np = key->name;
  np.clear();
  const bool v5 = !v6();
  PyRef name;  // getattr(o, '__name__', None), only where the rules look at it
  if (v5 || PyModule_Check(o) || PyType_Check(o)) {
    PyObject* raw = nullptr;
    if (_PyObject_LookupAttr(o, s_name, &raw) < 0) return false;
    name = PyRef::Steal(raw);
  }
  const bool named_module = name && PyUnicode_Check(name.get()) &&
                            PyUnicode_CompareWithASCIIString(name.get(), "module") == 0;
  if (PyModule_Check(o)) {
    if (!named_module) {
      PyObject* modules = PySys_GetObject("modules");  // borrowed
      int in_sys = (modules != nullptr && name) ? PyMapping_HasKey(modules, name.get()) : 0;
      if (in_sys != 0) return AppendStr(name.get(), &np);
      PyRef cls = PyRef::Steal(PyObject_GetAttr(o, sup_.s_class.get()));
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
      _PyType_Lookup(t, sup_.s_class.get()) == sup_.object_class_descr.get()) {
    return ClassName(type, s_module, s_name, &np);
  }
  PyRef cls = PyRef::Steal(PyObject_GetAttr(o, sup_.s_class.get()));
  if (!cls) {
    PyErr_Clear();
    cls = PyRef::Borrow(type);
  }
  return ClassName(cls.get(), s_module, s_name, &np);
}

PyRef ClassicObjectSpace::LookupLocal(const brine::Value& id_pack) {
  IdKey key;
  if (ValueToKey(id_pack, &key)) {
    auto it = table_.find(key);
    if (it != table_.end()) return PyRef::Borrow(it->second.obj.get());
  }
  RaiseKeyError(id_pack);
  return PyRef();
}

PyRef ClassicObjectSpace::Unbox(const brine::Value& boxed) {
  const auto* pair = boxed.get_if<brine::Tuple>();
  int64_t label = 0;
  if (pair == nullptr || pair->items.size() != 2 || !SmallInt(pair->items[0], &label)) {
    PyErr_SetString(PyExc_ValueError, "malformed boxed value");
    return PyRef();
  }
  const brine::Value& payload = pair->items[1];
  switch (label) {
    case core::protocol::kLabelValue:
      return ToPython(payload);
    case core::protocol::kLabelTuple: {
      const auto* items = payload.get_if<brine::Tuple>();
      if (items == nullptr) {
        PyErr_SetString(PyExc_ValueError, "malformed boxed tuple");
        return PyRef();
      }
      PyRef t = PyRef::Steal(PyTuple_New(static_cast<Py_ssize_t>(items->items.size())));
      if (!t) return t;
      for (size_t i = 0; i < items->items.size(); ++i) {
        PyRef item = Unbox(items->items[i]);
        if (!item) return item;
        PyTuple_SET_ITEM(t.get(), static_cast<Py_ssize_t>(i), item.release());
      }
      return t;
    }
    case core::protocol::kLabelLocalRef:
      return LookupLocal(payload);
    case core::protocol::kLabelRemoteRef: {
      IdKey key;
      if (!ValueToKey(payload, &key)) {
        PyErr_SetString(PyExc_ValueError, "malformed id_pack");
        return PyRef();
      }
      PyRef idp = ToPython(payload);
      if (!idp) return idp;
      PyObject* proxies = Proxies();
      if (proxies == nullptr) return PyRef();
      return PyRef::Steal(PyObject_CallMethodOneArg(proxies, sup_.s_proxy.get(), idp.get()));
    }
    default:
      PyErr_Format(PyExc_ValueError, "invalid label %lld", static_cast<long long>(label));
      return PyRef();
  }
}

Outcome ClassicObjectSpace::BoxReply(PyObject* result) {
  std::vector<IdKey> added;
  brine::Value v;
  IdKey key;
  const BoxAs as = Classify(result, &v, &key, &added, 0);
  if (as == BoxAs::kError) {
    Rollback(added);
    return ExceptionOutcome();
  }
  if (as == BoxAs::kValue) {
    // A value (a large bytes or str among them) is encoded once, straight into the frame.
    return Outcome::Reply(brine::TupleOf(brine::Int(core::protocol::kLabelValue), std::move(v)));
  }
  // References and tuples of boxes: straight into bytes, no tree.
  std::string encoded;
  encoded.reserve(128);  // one allocation for most replies (a reference's is ~50 bytes)
  if (!AppendBoxed(result, as, v, key, &encoded, &added, 0)) {
    Rollback(added);
    return ExceptionOutcome();
  }
  return Outcome::EncodedReply(std::move(encoded));
}

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

// --- handlers --------------------------------------------------------------------------------

// mode 0: get, 1: set, 2: delete. Hooks on type(obj) skip every check (§5.1).
PyRef ClassicObjectSpace::AccessAttr(PyObject* obj, PyObject* raw_name, PyObject* hook_name,
                                     PyObject* value, int mode) {
  PyRef name = AttrName(raw_name);
  if (!name) return name;
  // hasattr(type(obj), hook): the MRO lookup is cached and raises nothing when absent (a getattr
  // on a type formats an AttributeError first, which cost more than the whole request).
  if (_PyType_Lookup(Py_TYPE(obj), hook_name) != nullptr) {
    PyRef hook =
        PyRef::Steal(PyObject_GetAttr(reinterpret_cast<PyObject*>(Py_TYPE(obj)), hook_name));
    if (!hook) return hook;
    if (mode == 1) {
      return PyRef::Steal(
          PyObject_CallFunctionObjArgs(hook.get(), obj, name.get(), value, nullptr));
    }
    return PyRef::Steal(PyObject_CallFunctionObjArgs(hook.get(), obj, name.get(), nullptr));
  }
  switch (mode) {
    case 0:
      return PyRef::Steal(PyObject_GetAttr(obj, name.get()));
    case 1:
      if (PyObject_SetAttr(obj, name.get(), value) < 0) return PyRef();
      return PyRef::Borrow(Py_None);
    default:
      if (PyObject_DelAttr(obj, name.get()) < 0) return PyRef();
      return PyRef::Borrow(Py_None);
  }
}

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
  return PyRef::Steal(PyObject_Call(fn, pos.get(), kw.get()));
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
      return AccessAttr(arg(0), arg(1), sup_.s_rpyc_getattr.get(), nullptr, 0);
    case Handler::kDelAttr:
      if (!CheckArgs(a, 2, 2, "DELATTR")) return PyRef();
      return AccessAttr(arg(0), arg(1), sup_.s_rpyc_delattr.get(), nullptr, 2);
    case Handler::kSetAttr:
      if (!CheckArgs(a, 3, 3, "SETATTR")) return PyRef();
      return AccessAttr(arg(0), arg(1), sup_.s_rpyc_setattr.get(), arg(2), 1);
    case Handler::kCall:
      if (!CheckArgs(a, 2, 3, "CALL")) return PyRef();
      return Call(arg(0), arg(1), n > 2 ? arg(2) : nullptr);
    case Handler::kCallAttr: {
      if (!CheckArgs(a, 3, 4, "CALLATTR")) return PyRef();
      PyRef fn = AccessAttr(arg(0), arg(1), sup_.s_rpyc_getattr.get(), nullptr, 0);
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
      PyRef fn = AccessAttr(type, op, sup_.s_rpyc_getattr.get(), nullptr, 0);
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
      return PyRef::Steal(PyObject_CallFunctionObjArgs(sup_.oldslicing.get(), arg(0), arg(1),
                                                       arg(2), arg(3), arg(4), arg(5), nullptr));
    case Handler::kCtxExit:
      if (!CheckArgs(a, 2, 2, "CTXEXIT")) return PyRef();
      return PyRef::Steal(
          PyObject_CallFunctionObjArgs(sup_.ctxexit.get(), arg(0), arg(1), nullptr));
    case Handler::kInstanceCheck: {
      if (!CheckArgs(a, 2, 2, "INSTANCECHECK")) return PyRef();
      brine::Value idp;
      IdKey key;
      PyRef other = PyRef::Borrow(Py_None);  // a reference of our own: Python runs below
      PyRef name_pack = PyRef::Borrow(Py_None);
      if (ToValue(arg(1), &idp) == Dump::kOk && ValueToKey(idp, &key)) {
        auto it = table_.find(key);
        if (it != table_.end()) other = PyRef::Borrow(it->second.obj.get());
        name_pack = PyRef::Steal(
            PyUnicode_FromStringAndSize(key.name.data(), static_cast<Py_ssize_t>(key.name.size())));
        if (!name_pack) return name_pack;
      } else {
        PyErr_Clear();
        return PyRef::Borrow(Py_False);
      }
      return PyRef::Steal(PyObject_CallFunctionObjArgs(sup_.instancecheck.get(), arg(0),
                                                       other.get(), name_pack.get(), nullptr));
    }
    case Handler::kClose:
    case Handler::kDel:
    case Handler::kInspect:  // Handle() answers it (Inspect)
      break;
  }
  PyErr_Format(PyExc_KeyError, "%d", static_cast<int>(h));
  return PyRef();
}

namespace {
// The version tag of a class, assigned if need be; 0 when it has none (then nothing is cached).
unsigned VersionTag(PyTypeObject* t, PyObject* any_name) {
  if ((t->tp_flags & Py_TPFLAGS_VALID_VERSION_TAG) == 0) (void)_PyType_Lookup(t, any_name);
  return (t->tp_flags & Py_TPFLAGS_VALID_VERSION_TAG) != 0 ? t->tp_version_tag : 0;
}
constexpr size_t kMethodsCacheSize = 4096;
}  // namespace

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
    Rollback(added);
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
    if (args->items.size() == 2) {
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
  IdKey key;
  auto it = ValueToKey(*id_pack, &key) ? table_.find(key) : table_.end();
  if (it == table_.end()) {
    RaiseKeyError(*id_pack);
    return ExceptionOutcome();
  }
  it->second.refs -= count;
  if (it->second.refs <= 0) {
    Entry dead = std::move(it->second);
    table_.erase(it);
    // `dead` releases the object here, with the GIL held.
  }
  return Outcome::Reply(
      brine::MakeTuple({brine::Int(core::protocol::kLabelValue), brine::NoneType{}}));
}

// --- requests to the client ------------------------------------------------------------------

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
    Rollback(added);
    return PyRef();
  }
  core::Result<Outcome> r = core::Fail(core::Error::Closed("not sent"));
  {
    GilRelease nogil;
    r = peer_.Call(static_cast<Handler>(handler), std::move(boxed));
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
  PyRef raw = ToPython(*value);
  if (!raw) return raw;
  PyRef exc = PyRef::Steal(PyObject_CallOneArg(sup_.load_exc.get(), raw.get()));
  if (!exc) return exc;
  PyErr_SetObject(reinterpret_cast<PyObject*>(Py_TYPE(exc.get())), exc.get());
  return PyRef();
}

// --- the _classicd_native module -------------------------------------------------------------

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
  try {  // C++ exceptions must not unwind through CPython frames (EMBEDDING.md §3.5)
    return link->space->Request(static_cast<int>(handler), args[2]).release();
  } catch (const std::exception& e) {
    PyErr_SetString(PyExc_RuntimeError, e.what());
  } catch (...) {
    PyErr_SetString(PyExc_RuntimeError, "internal error");
  }
  return nullptr;
}

// queue_del(handle, id_pack, count): a proxy died; its DEL goes out from the connection thread.
// Runs on whatever thread dropped the proxy (EMBEDDING.md §3.4), so it only queues.
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

std::unique_ptr<core::protocol::ObjectSpace> MakeClassicObjectSpace(Interpreter& interpreter,
                                                                    core::protocol::Peer& peer,
                                                                    RootService root) {
  GilHold gil;
  auto space = std::make_unique<ClassicObjectSpace>(interpreter.support(), peer);
  if (!space->Init(root == RootService::kClassic)) {
    // Only on out-of-memory-like failures; the space still answers, with exceptions.
    PyErr_Clear();
  }
  return space;
}

}  // namespace classicd::objspace
