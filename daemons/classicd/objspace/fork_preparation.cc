// Forking (docs/embedding.md §4): Interpreter::Fork() with CPython's fork hooks, a child's quick
// exit, and PrepareFork(), which readies a forking parent so that each child does and copies less:
// a rehearsal of a classic connection, plugs for the allocators' holes, and a quiet threading
// at-fork hook.

#include <Python.h>

#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <optional>
#include <string>
#include <vector>

#include <malloc.h>
#include <unistd.h>

#include "daemons/classicd/objspace/internal.h"
#include "daemons/classicd/objspace/objspace.h"
#include "daemons/classicd/objspace/py_ref.h"
#include "libcore/base/result.h"
#include "libcore/brine/brine.h"
#include "libcore/brine/value.h"
#include "libcore/protocol/object_space.h"

namespace classicd::objspace {
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

// What rpyc.classic.connect() and a first eval send (docs/protocol.md §7.2), both generations, plus
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
    auto boxed = o.value.Decoded();
    if (!boxed) return fail();
    const auto* t = boxed->get_if<brine::Tuple>();
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

}  // namespace classicd::objspace
