// Forking: a child serves and finalises; PrepareFork() readies the parent.

#include <Python.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <future>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <gtest/gtest.h>
#include <malloc.h>
#include <sys/wait.h>
#include <unistd.h>

#include "daemons/classicd/objspace/objspace.h"
#include "daemons/classicd/objspace/objspace_testing.h"
#include "libcore/brine/brine.h"
#include "libcore/brine/value.h"
#include "libcore/protocol/consts.h"
#include "libcore/protocol/object_space.h"

namespace classicd::objspace::testing {
namespace {

TEST(InterpreterTest, ForkedChildServesAndFinalises) {
  ASSERT_NE(g_interp, nullptr);
  auto pid = g_interp->Fork();
  ASSERT_TRUE(pid.has_value()) << pid.error().ToString();
  if (*pid == 0) {
    // Child: this thread is Python's main thread and serves a connection.
    bool ok = g_interp
                  ->RunString(
                      "import threading\n"
                      "assert threading.main_thread() is threading.current_thread()\n"
                      "assert len(threading.enumerate()) == 1\n")
                  .has_value();
    FakePeer peer;
    auto space = MakeClassicObjectSpace(*g_interp, peer);
    Value root = PayloadOf(HandleSent(*space, Handler::kGetRoot, ByVal(T({}))).value);
    Value eval = PayloadOf(
        HandleSent(*space, Handler::kGetAttr, Boxes({LocalRef(root), ByVal(S("eval"))})).value);
    Outcome o = HandleSent(*space, Handler::kCall,
                           Boxes({LocalRef(eval), ByVal(T({S("6 * 7")})), ByVal(T({}))}));
    ok = ok && o.value == ByVal(I(42));
    space.reset();
    FinalizeInterpreter();
    _exit(ok ? 0 : 3);
  }
  const int status = WaitChild(*pid, 10);
  ASSERT_NE(status, -1) << "the child hung";
  ASSERT_TRUE(WIFEXITED(status)) << status;
  EXPECT_EQ(WEXITSTATUS(status), 0);
  // The parent goes on.
  EXPECT_TRUE(g_interp->RunString("assert 6 * 7 == 42").has_value());
}

TEST(InterpreterTest, PrepareForkThenChildServesAndExits) {
  ASSERT_NE(g_interp, nullptr);
  // In a child of the test process, so that the GC freeze stays there.
  auto pid = g_interp->Fork();
  ASSERT_TRUE(pid.has_value()) << pid.error().ToString();
  if (*pid == 0) {
    bool ok = g_interp->PrepareFork().has_value();
    if (!InterpreterOptions::kSanitizerBuild) {
      // The holes of pymalloc's partly used pools are plugged: a new block of every size class
      // comes from a fresh 16 KiB pool (just after its 48-byte header), as it will in a child
      // (checked before any Python runs again: freeing old objects makes new holes).
      for (size_t size = 16; size <= 512; size += 16) {
        void* p = PyObject_Malloc(size);  // the GIL stays with this thread after PrepareFork
        if ((reinterpret_cast<uintptr_t>(p) & ((uintptr_t{1} << 14) - 1)) != 48) _exit(20);
        PyObject_Free(p);
      }
      // And glibc's free lists: a small chunk comes from the top of the heap.
      void* h = malloc(16);  // NOLINT(cppcoreguidelines-no-malloc)
      const auto* top = static_cast<const char*>(sbrk(0)) - mallinfo2().keepcost;
      if (static_cast<const char*>(h) < top - 64) _exit(21);
      free(h);  // NOLINT(cppcoreguidelines-no-malloc)
    }
    ok = ok && g_interp->RunString("import gc\nassert gc.get_freeze_count() > 0\n").has_value();
    auto grandchild = g_interp->Fork();
    if (!grandchild) _exit(4);
    if (*grandchild == 0) {
      // The parent kept the GIL since PrepareFork(); the child must not: a thread that client
      // code starts runs while the serving thread waits outside Python.
      if (!g_interp
               ->RunString("import threading, time\n"
                           "import builtins\n"
                           "builtins._classicd_box = []\n"
                           "threading.Thread(target=lambda: (time.sleep(0.05),\n"
                           "    builtins._classicd_box.append(1))).start()\n")
               .has_value()) {
        g_interp->ExitChild(9);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(500));
      if (!g_interp->RunString("import builtins\nassert builtins._classicd_box == [1]\n")
               .has_value()) {
        g_interp->ExitChild(10);
      }
      FakePeer peer;
      peer.gen = Generation::kV5;
      auto space = MakeClassicObjectSpace(*g_interp, peer);
      bool served = EvalOn(*space, "6 * 7").value == ByVal(I(42));
      space.reset();
      g_interp->ExitChild(served ? 7 : 8);
    }
    int status = 0;
    ok = ok && waitpid(*grandchild, &status, 0) == *grandchild && WIFEXITED(status) &&
         WEXITSTATUS(status) == 7;
    _exit(ok ? 0 : 3);
  }
  const int status = WaitChild(*pid, 20);
  ASSERT_NE(status, -1) << "the child hung";
  ASSERT_TRUE(WIFEXITED(status)) << status;
  EXPECT_EQ(WEXITSTATUS(status), 0);
}

}  // namespace
}  // namespace classicd::objspace::testing
