// The process's embedded interpreter (EMBEDDING.md §1, §2, §8) and the GIL helpers.

#include <Python.h>

#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <malloc.h>
#include <unistd.h>

#include "daemons/classicd/objspace/internal.h"
#include "daemons/classicd/objspace/objspace.h"
#include "daemons/classicd/objspace/py_ref.h"
#include "libcore/brine/brine.h"
#include "libcore/brine/value.h"
#include "libcore/protocol/consts.h"
#include "libcore/protocol/object_space.h"

namespace classicd::objspace {
namespace {

// True between a successful Start() and the destructor. Thread-exit code checks it before
// touching Python: after Py_FinalizeEx any Python call may crash (EMBEDDING.md §8).
std::atomic<bool> g_alive{false};

// The thread state of one thread, created on its first GilHold and kept until the thread exits
// (EMBEDDING.md §2.2: no per-call thread-state churn).
struct ThreadPython {
  PyThreadState* ts = nullptr;
  PyGILState_STATE outer = PyGILState_UNLOCKED;
  std::shared_ptr<std::atomic<int>> spaces;  // ThreadSpaceCount()
  ThreadPython() = default;
  ThreadPython(const ThreadPython&) = delete;
  ThreadPython& operator=(const ThreadPython&) = delete;
  ThreadPython(ThreadPython&&) = delete;
  ThreadPython& operator=(ThreadPython&&) = delete;
  ~ThreadPython() {
    if (ts != nullptr && g_alive.load()) {
      PyEval_RestoreThread(ts);
      PyGILState_Release(outer);
    }
  }
};
thread_local ThreadPython t_python;

core::Error StatusError(const char* what, const PyStatus& st) {
  std::string msg = std::string(what) + ": ";
  if (st.func != nullptr) msg += std::string(st.func) + ": ";
  msg += st.err_msg != nullptr ? st.err_msg : "failed";
  if (PyStatus_IsExit(st) != 0) msg += " (exit code " + std::to_string(st.exitcode) + ")";
  return core::Error::Python(msg);
}

PyRef MakeStrList(const std::vector<std::string>& items) {
  PyRef list = PyRef::Steal(PyList_New(0));
  if (!list) return list;
  for (const auto& s : items) {
    PyRef item =
        PyRef::Steal(PyUnicode_DecodeFSDefaultAndSize(s.data(), static_cast<Py_ssize_t>(s.size())));
    if (!item || PyList_Append(list.get(), item.get()) < 0) return PyRef();
  }
  return list;
}

bool Intern(PyRef* out, const char* s) {
  *out = PyRef::Steal(PyUnicode_InternFromString(s));
  return static_cast<bool>(*out);
}

bool LoadSupport(Interpreter::Support* sup) {
  PyRef code = PyRef::Steal(Py_CompileString(kSupportSource, "<classicd-support>", Py_file_input));
  if (!code) return false;
  sup->module = PyRef::Steal(
      PyImport_ExecCodeModuleEx("_classicd_support", code.get(), "<classicd-support>"));
  if (!sup->module) return false;
  struct {
    PyRef* ref;
    const char* name;
  } attrs[] = {{&sup->get_methods, "get_methods"},
               {&sup->dump_exc, "dump_exc"},
               {&sup->load_exc, "load_exc"},
               {&sup->make_root, "make_root"},
               {&sup->proxy_conn_class, "ProxyConn"},
               {&sup->base_netref, "BaseNetref"},
               {&sup->ctxexit, "ctxexit"},
               {&sup->instancecheck, "instancecheck"},
               {&sup->pickle_dumps, "pickle_dumps"},
               {&sup->oldslicing, "oldslicing"}};
  for (auto& a : attrs) {
    *a.ref = PyRef::Steal(PyObject_GetAttrString(sup->module.get(), a.name));
    if (!*a.ref) return false;
  }
  sup->object_class_descr = PyRef::Steal(
      PyObject_GetAttrString(reinterpret_cast<PyObject*>(&PyBaseObject_Type), "__dict__"));
  if (!sup->object_class_descr) return false;
  sup->object_class_descr =
      PyRef::Steal(PyMapping_GetItemString(sup->object_class_descr.get(), "__class__"));
  if (!sup->object_class_descr) return false;
  return Intern(&sup->s_rpyc_getattr, "_rpyc_getattr") &&
         Intern(&sup->s_rpyc_setattr, "_rpyc_setattr") &&
         Intern(&sup->s_rpyc_delattr, "_rpyc_delattr") && Intern(&sup->s_proxy, "proxy") &&
         Intern(&sup->s_drop, "drop") && Intern(&sup->s_conn_attr, "____conn__") &&
         Intern(&sup->s_id_pack_attr, "____id_pack__") && Intern(&sup->s_v6, "v6") &&
         Intern(&sup->s_on_disconnect, "on_disconnect") && Intern(&sup->s_closed, "_closed") &&
         Intern(&sup->s_exit, "__exit__") && Intern(&sup->s_cmp, "__cmp__") &&
         Intern(&sup->s_class, "__class__") && Intern(&sup->s_module, "__module__") &&
         Intern(&sup->s_name, "__name__");
}

// sys.path[0:0] = extra + $PYTHONPATH entries.
bool SetupPath(const InterpreterOptions& options) {
  std::vector<std::string> entries = options.extra_sys_path;
  if (options.honour_pythonpath) {
    const char* env = std::getenv("PYTHONPATH");  // NOLINT(concurrency-mt-unsafe): before threads
    std::string pp = env != nullptr ? env : "";
    size_t start = 0;
    while (start <= pp.size()) {
      size_t end = pp.find(':', start);
      if (end == std::string::npos) end = pp.size();
      if (end > start) entries.push_back(pp.substr(start, end - start));
      start = end + 1;
    }
  }
  if (entries.empty()) return true;
  PyObject* path = PySys_GetObject("path");  // borrowed
  PyRef list = MakeStrList(entries);
  if (path == nullptr || !list) return false;
  return PyList_SetSlice(path, 0, 0, list.get()) == 0;
}

// Joins user threads that are not daemons for up to `grace_ms`, then makes Py_FinalizeEx stop
// waiting for the rest: threading._shutdown() joins exactly the locks in _shutdown_locks.
void StopWaitingForUserThreads(int grace_ms) {
  PyObject* modules = PySys_GetObject("modules");  // borrowed
  if (modules == nullptr || PyDict_GetItemString(modules, "threading") == nullptr) return;
  std::string code =
      "import threading as _t, time as _time\n"
      "_deadline = _time.monotonic() + " +
      std::to_string(grace_ms / 1000.0) +
      "\n"
      "for _th in _t.enumerate():\n"
      "    if _th is not _t.main_thread() and not _th.daemon:\n"
      "        _th.join(max(0.0, _deadline - _time.monotonic()))\n"
      "with _t._shutdown_locks_lock:\n"
      "    _t._shutdown_locks.clear()\n";
  PyRef globals = PyRef::Steal(PyDict_New());
  if (!globals || PyDict_SetItemString(globals.get(), "__builtins__", PyEval_GetBuiltins()) < 0) {
    PyErr_Clear();
    return;
  }
  PyRef r = PyRef::Steal(PyRun_String(code.c_str(), Py_file_input, globals.get(), globals.get()));
  if (!r) PyErr_Clear();
}

}  // namespace

std::shared_ptr<std::atomic<int>> ThreadSpaceCount() {
  if (!t_python.spaces) t_python.spaces = std::make_shared<std::atomic<int>>(0);
  return t_python.spaces;
}

bool OwnsThreadState() { return t_python.ts != nullptr && t_python.ts == PyThreadState_Get(); }

void ResetThreadPython() {
  PyThreadState* ts = PyThreadState_Get();
  PyErr_Clear();
  // threading.local (_thread._local) keeps each thread's data under a key of this dict; dropping
  // the dict drops the data (the locals' weak references clean up their side).
  if (ts->dict != nullptr) {
    PyObject* dict = ts->dict;
    ts->dict = nullptr;
    Py_DECREF(dict);
  }
  if (ts->context != nullptr) {
    Py_CLEAR(ts->context);
    ts->context_ver++;
  }
  if (ts->c_tracefunc != nullptr) PyEval_SetTrace(nullptr, nullptr);
  if (ts->c_profilefunc != nullptr) PyEval_SetProfile(nullptr, nullptr);
  Py_CLEAR(ts->async_exc);
  // threading.current_thread() of a thread Python did not start is a _DummyThread that stays in
  // threading._active under the thread's ident (attributes set on it would carry over).
  PyObject* modules = PySys_GetObject("modules");  // borrowed
  PyObject* threading = modules != nullptr ? PyDict_GetItemString(modules, "threading") : nullptr;
  if (threading != nullptr) {
    PyRef active = PyRef::Steal(PyObject_GetAttrString(threading, "_active"));
    PyRef dummy = PyRef::Steal(PyObject_GetAttrString(threading, "_DummyThread"));
    PyRef ident = PyRef::Steal(PyLong_FromUnsignedLong(PyThread_get_thread_ident()));
    if (active && dummy && ident && PyDict_Check(active.get())) {
      PyObject* th = PyDict_GetItemWithError(active.get(), ident.get());  // borrowed
      if (th != nullptr && PyObject_IsInstance(th, dummy.get()) == 1) {
        (void)PyDict_DelItem(active.get(), ident.get());
      }
    }
  }
  PyErr_Clear();
}

std::string FetchErrorText() {
  PyObject *t = nullptr, *v = nullptr, *tb = nullptr;
  PyErr_Fetch(&t, &v, &tb);
  if (t == nullptr) return "unknown Python error";
  PyErr_NormalizeException(&t, &v, &tb);
  PyRef type = PyRef::Steal(t), value = PyRef::Steal(v), trace = PyRef::Steal(tb);
  if (trace) PyException_SetTraceback(value.get(), trace.get());
  std::string text;
  PyRef tbmod = PyRef::Steal(PyImport_ImportModule("traceback"));
  PyRef lines;
  if (tbmod) {
    lines = PyRef::Steal(PyObject_CallMethod(tbmod.get(), "format_exception", "OOO", type.get(),
                                             value ? value.get() : Py_None,
                                             trace ? trace.get() : Py_None));
  }
  PyRef empty = PyRef::Steal(PyUnicode_FromString(""));
  PyRef joined = lines && empty ? PyRef::Steal(PyUnicode_Join(empty.get(), lines.get())) : PyRef();
  const char* utf8 = joined ? PyUnicode_AsUTF8(joined.get()) : nullptr;
  if (utf8 != nullptr) {
    text = utf8;
  } else {
    PyErr_Clear();
    text = reinterpret_cast<PyTypeObject*>(type.get())->tp_name;
  }
  while (!text.empty() && text.back() == '\n') text.pop_back();
  return text;
}

GilHold::GilHold() {
  if (PyGILState_Check() != 0) return;  // this thread already holds it (nested request)
  took_ = true;
  if (t_python.ts != nullptr) {
    PyEval_RestoreThread(t_python.ts);
    return;
  }
  if (PyThreadState* own = PyGILState_GetThisThreadState(); own != nullptr) {
    // A thread Python made (threading.Thread) that released the GIL around a request to the
    // client and now serves one of the client's: its state belongs to Python, which deletes it
    // when the thread ends, so it is borrowed here, never kept in t_python.
    PyEval_RestoreThread(own);
    return;
  }
  t_python.outer = PyGILState_Ensure();
  t_python.ts = PyThreadState_Get();
}

GilHold::~GilHold() {
  if (took_) PyEval_SaveThread();
}

Interpreter::Interpreter() : support_(std::make_unique<Support>()) {}

core::Result<std::unique_ptr<Interpreter>> Interpreter::Start(const InterpreterOptions& options) {
  if (Py_IsInitialized() != 0)
    return core::Fail(core::Error::Usage("the interpreter already runs"));
  if (options.ignore_sigpipe) (void)std::signal(SIGPIPE, SIG_IGN);
  struct sigaction old_int {};
  sigaction(SIGINT, nullptr, &old_int);

  PyPreConfig pre;
  PyPreConfig_InitIsolatedConfig(&pre);
  pre.utf8_mode = 1;
  if (options.malloc_allocator) pre.allocator = PYMEM_ALLOCATOR_MALLOC;
  PyStatus st = Py_PreInitialize(&pre);
  if (PyStatus_Exception(st) != 0) return core::Fail(StatusError("Py_PreInitialize", st));

  if (PyImport_AppendInittab("_classicd_native", &InitNativeModule) < 0) {
    return core::Fail(core::Error::Python("cannot register _classicd_native"));
  }

  PyConfig config;
  PyConfig_InitIsolatedConfig(&config);  // install_signal_handlers = 0, parse_argv = 0
  st = PyConfig_SetBytesString(&config, &config.executable, options.executable.c_str());
  std::vector<char*> argv;
  for (const auto& a : options.argv) argv.push_back(const_cast<char*>(a.c_str()));
  if (PyStatus_Exception(st) == 0 && !argv.empty()) {
    st = PyConfig_SetBytesArgv(&config, static_cast<Py_ssize_t>(argv.size()), argv.data());
  }
  if (PyStatus_Exception(st) == 0) st = Py_InitializeFromConfig(&config);
  PyConfig_Clear(&config);
  if (PyStatus_Exception(st) != 0) {
    return core::Fail(StatusError("Py_InitializeFromConfig", st));
  }

  std::unique_ptr<Interpreter> interp(new Interpreter());
  interp->finalize_grace_ms_ = options.finalize_grace_ms;
  interp->pymalloc_ = !options.malloc_allocator;
  g_alive.store(true);
  // From here on the destructor finalises; it expects the GIL released.
  auto fail = [&](const char* what) {
    core::Error e = core::Error::Python(std::string(what) + ": " + FetchErrorText());
    interp->main_thread_state_ = PyEval_SaveThread();
    return core::Fail(std::move(e));
  };
  if (!SetupPath(options)) return fail("setting sys.path");
  if (!LoadSupport(interp->support_.get())) return fail("loading the support module");
  // threading takes the thread that first imports it for the main thread: make that this one,
  // not whichever connection thread imports it first.
  if (!PyRef::Steal(PyImport_ImportModule("threading"))) return fail("importing threading");
  if (options.keep_default_sigint && old_int.sa_handler == SIG_DFL &&
      (old_int.sa_flags & SA_SIGINFO) == 0) {
    // `import signal` (rpyc, subprocess...) installs Python's SIGINT handler while it is SIG_DFL;
    // do that now and undo it, so it does not happen later.
    if (PyRun_SimpleString("import signal as _s\n_s.signal(_s.SIGINT, _s.SIG_DFL)\ndel _s\n") !=
        0) {
      return fail("restoring SIGINT");
    }
  }
  interp->main_thread_state_ = PyEval_SaveThread();
  return interp;
}

Interpreter::~Interpreter() {
  if (main_thread_state_ == nullptr) return;
  if (!fork_holds_gil_) PyEval_RestoreThread(static_cast<PyThreadState*>(main_thread_state_));
  for (void* p : pool_plugs_) PyObject_Free(p);
  pool_plugs_.clear();
  for (void* p : heap_plugs_) free(p);  // NOLINT(cppcoreguidelines-no-malloc)
  heap_plugs_.clear();
  if (after_fork_fn_ != nullptr) {  // threading._after_fork as it was (QuietAfterFork)
    auto* fn = static_cast<PyObject*>(after_fork_fn_);
    auto* code = static_cast<PyObject*>(after_fork_code_);
    if (PyObject_SetAttrString(fn, "__code__", code) < 0) PyErr_Clear();
    Py_DECREF(fn);
    Py_DECREF(code);
    after_fork_fn_ = after_fork_code_ = nullptr;
  }
  support_.reset();
  StopWaitingForUserThreads(finalize_grace_ms_);
  g_alive.store(false);
  Py_FinalizeEx();
}

namespace {

// The client side of PrepareFork's rehearsal: nothing to call back.
class RehearsalPeer final : public core::protocol::Peer {
 public:
  core::Result<core::protocol::Outcome> Call(core::protocol::Handler, core::brine::Value,
                                             int) override {
    return core::Fail(core::Error::Closed("rehearsal"));
  }
  core::Status Notify(core::protocol::Handler, core::brine::Value) override { return {}; }
  core::protocol::Generation generation() const override { return gen; }
  core::protocol::Generation gen = core::protocol::Generation::kV6;
};

// What rpyc.classic.connect() and a first eval send (PROTOCOL.md §7.2), both generations, plus
// an exception reply. Fails when a step does not get the reply a client would get: a rehearsal
// that stops early leaves the imports and caches to every child (it did once, when replies
// started to come encoded).
core::Status Rehearse(Interpreter& interp) {
  namespace brine = core::brine;
  using core::protocol::Handler;
  using core::protocol::Outcome;
  auto by_val = [](brine::Value v) { return brine::TupleOf(brine::Int(1), std::move(v)); };
  auto local = [](brine::Value idp) { return brine::TupleOf(brine::Int(3), std::move(idp)); };
  auto boxes = [](std::vector<brine::Value> items) {
    return brine::TupleOf(brine::Int(2), brine::Tuple{std::move(items)});
  };
  // The boxed reply's payload (decoded when the object space sent it encoded), or Fail.
  auto payload = [](const Outcome& o, const char* step) -> core::Result<brine::Value> {
    auto fail = [step] {
      return core::Fail(core::Error::Usage(std::string("fork preparation: no reply to ") + step));
    };
    if (o.kind != Outcome::Kind::kReply) return fail();
    brine::Value boxed = o.value;
    const std::string* bytes = !o.own_encoding.empty() ? &o.own_encoding : o.encoded.get();
    if (bytes != nullptr) {
      auto v = brine::Load(*bytes);
      if (!v) return fail();
      boxed = std::move(*v);
    }
    const auto* t = boxed.get_if<brine::Tuple>();
    if (t == nullptr || t->items.size() != 2) return fail();
    return t->items[1];
  };
  for (auto gen : {core::protocol::Generation::kV5, core::protocol::Generation::kV6}) {
    RehearsalPeer peer;
    peer.gen = gen;
    auto space = MakeClassicObjectSpace(interp, peer);
    auto root = payload(space->Handle(Handler::kGetRoot, by_val(brine::Tuple{})), "GETROOT");
    if (!root) return Fail(root.error());
    if (auto r =
            payload(space->Handle(Handler::kInspect, by_val(brine::TupleOf(*root))), "INSPECT");
        !r) {
      return Fail(r.error());
    }
    auto getmodule =
        payload(space->Handle(Handler::kGetAttr,
                              boxes({local(*root), by_val(brine::MakeStr("getmodule"))})),
                "GETATTR getmodule");
    if (!getmodule) return Fail(getmodule.error());
    for (const char* name : {"builtins", "importlib.util"}) {
      auto m = payload(
          space->Handle(Handler::kCall,
                        boxes({local(*getmodule), by_val(brine::TupleOf(brine::MakeStr(name))),
                               by_val(brine::Tuple{})})),
          name);
      if (!m) return Fail(m.error());
      space->Handle(Handler::kInspect, by_val(brine::TupleOf(*m)));
    }
    core::Result<brine::Value> eval;
    for (const char* name : {"execute", "namespace", "eval"}) {
      eval = payload(
          space->Handle(Handler::kGetAttr, boxes({local(*root), by_val(brine::MakeStr(name))})),
          name);
      if (!eval) return Fail(eval.error());
    }
    if (auto r = payload(
            space->Handle(Handler::kCall,
                          boxes({local(*eval), by_val(brine::TupleOf(brine::MakeStr("None"))),
                                 by_val(brine::Tuple{})})),
            "eval");
        !r) {
      return Fail(r.error());
    }
    const Outcome e = space->Handle(
        Handler::kCall,
        boxes({local(*eval),
               by_val(brine::TupleOf(brine::MakeStr("_classicd_rehearsal_undefined_name"))),
               by_val(brine::Tuple{})}));
    if (e.kind != Outcome::Kind::kException) {
      return Fail(core::Error::Usage("fork preparation: no exception from an undefined name"));
    }
    space->OnDisconnect();
  }
  return {};
}

// pymalloc (CPython 3.11, 64-bit: radix tree on) carves 16 KiB pools into blocks of one size
// class; a fresh pool's first block follows its 48-byte header.
constexpr uintptr_t kPoolSize = uintptr_t{16} << 10;
constexpr uintptr_t kPoolHeader = 48;
constexpr size_t kMaxBlock = 512;
constexpr size_t kPlugBudget = size_t{4} << 20;

// Takes every free block of pymalloc's partly used pools, size class by size class, until a
// block comes from a fresh pool (given back at once), and keeps them: the objects a forked child
// makes then go to pools of their own instead of into the holes of pools it shares with the
// parent (each such block costs the child a copy of a shared page). Returns the blocks taken.
std::vector<void*> PlugPoolHoles() {
  std::vector<void*> plugs;
  size_t bytes = 0;
  for (size_t size = 16; size <= kMaxBlock && bytes < kPlugBudget; size += 16) {
    while (bytes < kPlugBudget) {
      void* p = PyObject_Malloc(size);
      if (p == nullptr) break;
      if ((reinterpret_cast<uintptr_t>(p) & (kPoolSize - 1)) == kPoolHeader) {
        PyObject_Free(p);  // a fresh pool (or one whose first block was free): done
        break;
      }
      plugs.push_back(p);
      bytes += size;
    }
  }
  return plugs;
}

// The same for glibc's main heap, after malloc_trim(): takes 16-byte chunks out of the free
// lists until one comes from the top chunk (given back at once).
constexpr size_t kMaxHeapPlugs = size_t{1} << 17;

std::vector<void*> PlugHeapHoles() {
  std::vector<void*> plugs;
  plugs.reserve(kMaxHeapPlugs);  // mmapped: not from the heap being plugged
  const struct mallinfo2 mi = mallinfo2();
  const auto* top = static_cast<const char*>(sbrk(0)) - mi.keepcost;
  // The thread's cache first: up to 7 chunks of each size class up to 1 KiB, which malloc hands
  // out before anything else.
  for (size_t size = 8; size <= 1032; size += 16) {
    for (int i = 0; i < 7; ++i) {
      void* p = malloc(size);  // NOLINT(cppcoreguidelines-no-malloc)
      if (p != nullptr) plugs.push_back(p);
    }
  }
  while (plugs.size() < kMaxHeapPlugs) {
    void* p = malloc(16);  // NOLINT(cppcoreguidelines-no-malloc)
    if (p == nullptr) break;
    if (static_cast<const char*>(p) >= top) {
      free(p);  // NOLINT(cppcoreguidelines-no-malloc)
      break;
    }
    plugs.push_back(p);
  }
  return plugs;
}

// threading registers _after_fork() to run in every forked child (os.register_at_fork). It
// exists for a child forked while other threads ran: it drops them from the thread table and
// replaces every lock they might have held. A forking parent after PrepareFork() runs Python on
// one thread only, the main thread, and holds no lock of threading's when it forks; in its
// children CPython 3.11's _after_fork() then only swaps objects for equal fresh ones, yet it
// writes to ~80 pages the child shares with the parent (module dict, thread object, locks, the
// freed objects' pools, the code's quickening), ~0.3 ms of a connection's CPU. When the parent is
// in that state, this makes the registered function a no-op in the parent and returns it with
// its real code; each child puts the code back right after the fork hooks (Interpreter::Fork),
// so an os.fork() in client code, which may have threads, still gets the full reset. None
// otherwise (the hook stays as it is).
constexpr const char kQuietAfterFork[] = R"(
def _quiet_after_fork():
    import sys, threading, types
    fn = getattr(threading, "_after_fork", None)
    main = threading.main_thread()
    if (sys.version_info[:2] != (3, 11) or type(fn) is not types.FunctionType
            or fn.__closure__ is not None or threading.current_thread() is not main
            or threading._enumerate() != [main] or threading._limbo
            or any(t is not main for t in threading._dangling)):
        return None
    real = fn.__code__
    def _after_fork():
        pass
    fn.__code__ = _after_fork.__code__
    return fn, real
_result = _quiet_after_fork()
)";

}  // namespace

void Interpreter::QuietAfterFork() {
  PyRef globals = PyRef::Steal(PyDict_New());
  if (!globals || PyDict_SetItemString(globals.get(), "__builtins__", PyEval_GetBuiltins()) < 0) {
    PyErr_Clear();
    return;
  }
  PyRef r =
      PyRef::Steal(PyRun_String(kQuietAfterFork, Py_file_input, globals.get(), globals.get()));
  PyObject* result = r ? PyDict_GetItemString(globals.get(), "_result") : nullptr;  // borrowed
  if (result == nullptr || !PyTuple_Check(result) || PyTuple_GET_SIZE(result) != 2) {
    PyErr_Clear();
    return;
  }
  // Kept until the interpreter finalises (~Interpreter puts the real code back then).
  after_fork_fn_ = Py_NewRef(PyTuple_GET_ITEM(result, 0));
  after_fork_code_ = Py_NewRef(PyTuple_GET_ITEM(result, 1));
}

core::Status Interpreter::PrepareFork() {
  const core::Status rehearsed = Rehearse(*this);
  {
    GilHold gil;
    // PyOS_AfterFork_Child() deletes and re-creates the GIL state's thread-local key: libpython's
    // first call of pthread_key_delete, which would be bound lazily in every child (the dynamic
    // loader's lookup through all the libraries' symbol tables, ~25 page faults). Bound here.
    Py_tss_t key = Py_tss_NEEDS_INIT;
    if (PyThread_tss_create(&key) == 0) PyThread_tss_delete(&key);
    if (!after_fork_fn_) QuietAfterFork();
    PyRef gc = PyRef::Steal(PyImport_ImportModule("gc"));
    PyRef r = gc ? PyRef::Steal(PyObject_CallMethod(gc.get(), "collect", nullptr)) : PyRef();
    if (r) r = PyRef::Steal(PyObject_CallMethod(gc.get(), "freeze", nullptr));
    if (!r) return core::Fail(core::Error::Python("preparing to fork: " + FetchErrorText()));
    if (pymalloc_ && pool_plugs_.empty()) pool_plugs_ = PlugPoolHoles();
  }
  malloc_trim(0);
  if (pymalloc_ && heap_plugs_.empty()) heap_plugs_ = PlugHeapHoles();
  prepared_ = true;
  // The forking thread (the one that started the interpreter) keeps the GIL from now on: no
  // other thread of the parent runs Python, and taking and releasing it around each fork writes
  // the GIL's state and the current-thread pointer, pages that each child then keeps a copy of.
  if (!fork_holds_gil_ &&
      PyGILState_GetThisThreadState() == static_cast<PyThreadState*>(main_thread_state_)) {
    PyEval_RestoreThread(static_cast<PyThreadState*>(main_thread_state_));
    fork_holds_gil_ = true;
  }
  return rehearsed;  // the rest of the preparation stands either way
}

void Interpreter::ExitChild(int status) {
  {
    GilHold gil;
    for (const char* name : {"stdout", "stderr"}) {
      PyObject* f = PySys_GetObject(name);  // borrowed
      if (f == nullptr || f == Py_None) continue;
      PyRef r = PyRef::Steal(PyObject_CallMethod(f, "flush", nullptr));
      if (!r) PyErr_Clear();
    }
  }
  ::_exit(status);
}

core::Result<int> Interpreter::Fork(bool freeze_gc) {
  std::optional<GilHold> gil;
  if (!fork_holds_gil_) gil.emplace();
  // After PrepareFork() the parent makes no Python objects: freezing again would only write to
  // pages that each child then keeps a copy of.
  if (freeze_gc && !prepared_) {
    PyRef gc = PyRef::Steal(PyImport_ImportModule("gc"));
    PyRef r = gc ? PyRef::Steal(PyObject_CallMethod(gc.get(), "freeze", nullptr)) : PyRef();
    if (!r) PyErr_Clear();
  }
  PyOS_BeforeFork();
  pid_t pid = fork();
  int saved_errno = errno;
  if (pid == 0) {
    PyOS_AfterFork_Child();
    if (after_fork_fn_) {  // threading._after_fork gets its code back (QuietAfterFork)
      if (PyObject_SetAttrString(static_cast<PyObject*>(after_fork_fn_), "__code__",
                                 static_cast<PyObject*>(after_fork_code_)) < 0) {
        PyErr_Clear();
      }
    }
    // The forking thread is the child's only thread: its state is the one to finalise with.
    main_thread_state_ = PyThreadState_Get();
    if (fork_holds_gil_) {
      // The child serves on this thread and releases the GIL while it waits for the client, so
      // threads that client code starts can run.
      fork_holds_gil_ = false;
      PyEval_SaveThread();
    }
  } else {
    PyOS_AfterFork_Parent();
  }
  if (pid < 0) {
    return core::Fail(core::Error::Io("fork: " + core::ErrnoText(saved_errno)));
  }
  return static_cast<int>(pid);
}

core::Status Interpreter::RunString(const std::string& code) {
  GilHold gil;
  PyRef globals = PyRef::Steal(PyDict_New());
  if (!globals || PyDict_SetItemString(globals.get(), "__builtins__", PyEval_GetBuiltins()) < 0) {
    return core::Fail(core::Error::Python(FetchErrorText()));
  }
  PyRef r = PyRef::Steal(PyRun_String(code.c_str(), Py_file_input, globals.get(), globals.get()));
  if (!r) return core::Fail(core::Error::Python(FetchErrorText()));
  return {};
}

}  // namespace classicd::objspace
