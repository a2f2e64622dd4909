// The process's embedded interpreter (docs/embedding.md §1, §2, §8) and the GIL helpers.

#include <Python.h>

#include <atomic>
#include <csignal>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "daemons/classicd/objspace/internal.h"
#include "daemons/classicd/objspace/objspace.h"
#include "daemons/classicd/objspace/py_ref.h"
#include "daemons/classicd/objspace/type_hash.h"

namespace classicd::objspace {
namespace {

// True between a successful Start() and the destructor. Thread-exit code checks it before
// touching Python: after Py_FinalizeEx any Python call may crash (docs/embedding.md §8).
std::atomic<bool> g_alive{false};

// The thread state of one thread, created on its first GilHold and kept until the thread exits
// (docs/embedding.md §2.2: no per-call thread-state churn).
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
               {&sup->load_exc_hosted, "load_exc_hosted"},
               {&sup->propagate_exc, "propagate_exc"},
               {&sup->make_root, "make_root"},
               {&sup->proxy_conn_class, "ProxyConn"},
               {&sup->base_netref, "BaseNetref"},
               {&sup->ctxexit, "ctxexit"},
               {&sup->instancecheck, "instancecheck"},
               {&sup->pickle_dumps, "pickle_dumps"},
               {&sup->call0, "call0"},
               {&sup->call, "call"},
               {&sup->call_kw, "call_kw"}};
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
  sup->classic_policy = AccessPolicy::Make(ProtocolConfig::Classic());
  if (!sup->classic_policy) return false;
  return Intern(&sup->s_proxy, "proxy") && Intern(&sup->s_drop, "drop") &&
         Intern(&sup->s_conn_attr, "____conn__") && Intern(&sup->s_id_pack_attr, "____id_pack__") &&
         Intern(&sup->s_v6, "v6") && Intern(&sup->s_on_disconnect, "on_disconnect") &&
         Intern(&sup->s_closed, "_closed") && Intern(&sup->s_exit, "__exit__") &&
         Intern(&sup->s_cmp, "__cmp__") && Intern(&sup->s_class, "__class__") &&
         Intern(&sup->s_module, "__module__") && Intern(&sup->s_name, "__name__");
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

  // Before any type is hashed; the Python server's executable (never a PATH lookup).
  (void)MatchTypeHashes(options.executable);

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

std::string PythonVersion() {
  const std::string full = Py_GetVersion();  // "3.11.2 (main, ...) [GCC 12.2.0]"
  return full.substr(0, full.find(' '));
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
