// The embedded interpreter: its configuration, RunString, shutdown, INSPECT lists against the
// reference libraries.

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

TEST(InterpreterTest, InspectListsMatchTheReferenceLibrary) {
  ASSERT_NE(g_interp, nullptr);
  // python3-rpyc 5.3.0 is importable by the embedded interpreter; compare with its get_methods.
  auto st = g_interp->RunString(
      "import sys, rpyc, rpyc.core.netref as n, _classicd_support as s\n"
      "from rpyc.lib import get_methods\n"
      "ref = sorted(k for k, _ in get_methods(n.LOCAL_ATTRS, rpyc.SlaveService()))\n"
      "root, _ = s.make_root()\n"
      "ours = sorted(k for k, _ in s.get_methods(root, False))\n"
      "assert ref == ours, (ref, ours)\n"
      "for obj in (sys, [], int, ValueError('x'), s.make_root):\n"
      "  ref = sorted(get_methods(n.LOCAL_ATTRS, obj))\n"
      "  ours = sorted(s.get_methods(obj, False))\n"
      "  assert ref == ours, (obj, ref, ours)\n");
  EXPECT_TRUE(st.has_value()) << st.error().message();
}

TEST(InterpreterTest, UserThreadsDoNotBlockShutdown) {
  ASSERT_NE(g_interp, nullptr);
  // A thread without daemon=True that never ends: finalisation must still return (the
  // environment's TearDown destroys the interpreter after all tests; ctest's timeout catches a
  // hang).
  EXPECT_TRUE(g_interp
                  ->RunString("import threading, time\n"
                              "threading.Thread(target=time.sleep, args=(3600,)).start()\n")
                  .has_value());
}

TEST(InterpreterTest, InspectListsMatchTheRpyc6Library) {
  ASSERT_NE(g_interp, nullptr);
  const char* env = std::getenv("RPYC6_PATH");
  std::string path =
      env != nullptr ? env : std::string(RPYC_SOURCE_DIR) + "/../shared/clients/rpyc6";
  if (!std::filesystem::exists(path + "/rpyc/__init__.py")) {
    GTEST_SKIP() << "rpyc 6.x library not found at " << path << " (set RPYC6_PATH)";
  }
  // The same objects go through 6.x's get_methods in a child /usr/bin/python3, and ours here.
  std::string code = R"py(
import subprocess, _classicd_support as s
common = """
import sys
class K:
    @classmethod
    def c(cls): pass
    @staticmethod
    def st(): pass
    class Nested: pass
    def m(self): pass
"""
probe = common + """
import rpyc, rpyc.core.netref as n
from rpyc.lib import get_methods
objs = [rpyc.SlaveService(), sys, [], int, K(), K]
print(repr([sorted(k for k, _ in get_methods(n.LOCAL_ATTRS, o)) for o in objs]))
"""
out = subprocess.run(['/usr/bin/python3', '-c', probe], capture_output=True, text=True,
                     env={'PYTHONPATH': PATH}, check=True).stdout
ref = eval(out)
ns = {}
exec(common, ns)
objs = [s.make_root()[0], ns['sys'], [], int, ns['K'](), ns['K']]
ours = [sorted(k for k, _ in s.get_methods(o, True)) for o in objs]
assert ref == ours, (ref, ours)
)py";
  auto st = g_interp->RunString("PATH = '" + path + "'\n" + code);
  EXPECT_TRUE(st.has_value()) << st.error().message();
}

TEST(InterpreterTest, RunStringReportsErrors) {
  ASSERT_NE(g_interp, nullptr);
  EXPECT_TRUE(g_interp->RunString("x = 1").has_value());
  auto st = g_interp->RunString("raise ValueError('nope')");
  ASSERT_FALSE(st.has_value());
  EXPECT_NE(st.error().message().find("ValueError: nope"), std::string::npos);
}

TEST(InterpreterTest, Configuration) {
  ASSERT_NE(g_interp, nullptr);
  EXPECT_TRUE(g_interp
                  ->RunString("import sys, signal\n"
                              "assert sys.executable == '/usr/bin/python3', sys.executable\n"
                              "assert sys.flags.utf8_mode == 1\n"
                              "assert signal.getsignal(signal.SIGINT) == signal.SIG_DFL\n"
                              "assert signal.getsignal(signal.SIGPIPE) == signal.SIG_IGN\n"
                              "assert sys.path[:3] == ['/nonexistent/classicd-extra',\n"
                              "    '/nonexistent/classicd-pp1', '/nonexistent/classicd-pp2']\n"
                              "assert any(p.endswith('dist-packages') for p in sys.path)\n"
                              "import rpyc\n")
                  .has_value());
}

}  // namespace
}  // namespace classicd::objspace::testing
