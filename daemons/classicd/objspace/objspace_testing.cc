// The interpreter of the object space's test binary, and the helpers objspace_testing.h declares.

#include "daemons/classicd/objspace/objspace_testing.h"

#include <chrono>
#include <csignal>
#include <cstdlib>
#include <memory>
#include <thread>

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

namespace classicd::objspace::testing {

Interpreter* g_interp = nullptr;

namespace {

class InterpreterEnv : public ::testing::Environment {
 public:
  void SetUp() override {
    InterpreterOptions options;
    options.extra_sys_path = {"/nonexistent/classicd-extra"};
    setenv("PYTHONPATH", "/nonexistent/classicd-pp1:/nonexistent/classicd-pp2", 1);
    auto interp = Interpreter::Start(options);
    ASSERT_TRUE(interp.has_value()) << interp.error().ToString();
    interp_ = std::move(*interp);
    g_interp = interp_.get();
  }
  void TearDown() override {
    g_interp = nullptr;
    interp_.reset();
  }
  // For a forked child: finalise there.
  void Finalize() { TearDown(); }

 private:
  std::unique_ptr<Interpreter> interp_;
};

InterpreterEnv* const kEnv =
    static_cast<InterpreterEnv*>(::testing::AddGlobalTestEnvironment(new InterpreterEnv));

}  // namespace

void FinalizeInterpreter() { kEnv->Finalize(); }

int WaitChild(int pid, int seconds) {
  int status = 0;
  for (int i = 0; i < seconds * 20; ++i) {
    const pid_t r = waitpid(pid, &status, WNOHANG);
    if (r == pid) return status;
    if (r < 0) return -1;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  kill(pid, SIGKILL);
  waitpid(pid, &status, 0);
  return -1;
}

}  // namespace classicd::objspace::testing
