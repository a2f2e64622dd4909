#include "libcore/server/forking.h"

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <string>
#include <system_error>
#include <thread>
#include <utility>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

namespace core::server {
namespace {

Result<pid_t> PlainFork() {
  const pid_t pid = ::fork();
  if (pid < 0) {
    return Fail(Error::Io("fork: " + ErrnoText(errno)));
  }
  return pid;
}

// A shared library's first call to a function of another library is bound then (lazy binding):
// the dynamic loader looks the name up in every loaded library, reading their symbol tables, and
// writes the calling library's GOT. Done in a child, that is ~25 page faults (file pages the
// child has not mapped yet, a copy of the GOT page) each time, in each child. The libstdc++ calls
// that serving a connection makes and the forking parent does not (LD_DEBUG=bindings on children
// of rpyc-classicd) are made once here, so the children inherit them bound.
void BindAhead() {
  std::condition_variable cv;
  cv.notify_all();                         // pthread_cond_broadcast
  (void)std::chrono::steady_clock::now();  // clock_gettime
  (void)std::chrono::system_clock::now();
}

}  // namespace

ForkingServer::ForkingServer(Hooks hooks, Options options)
    : hooks_(std::move(hooks)), options_(std::move(options)) {
  if (!hooks_.fork) hooks_.fork = PlainFork;
  BindAhead();
}

Result<pid_t> ForkingServer::Spawn(std::unique_ptr<transport::Stream> stream, uint64_t id) {
  auto pid = hooks_.fork();
  if (!pid) return Fail(pid.error());  // `stream` closes here
  if (*pid == 0) RunChild(std::move(stream), id);
  if (children_.size() == children_.capacity()) children_.reserve(children_.size() * 2 + 64);
  children_.push_back(Child{*pid, id});
  return *pid;  // the parent's copy of `stream` closes here
}

void ForkingServer::RunChild(std::unique_ptr<transport::Stream> stream, uint64_t id) {
  for (int s : options_.default_signals) ::signal(s, SIG_DFL);
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, nullptr);
  int status = 0;
  // Nothing may unwind out of here: the caller's frames are the parent's accept path.
  try {
    if (hooks_.in_child) hooks_.in_child();
    if (hooks_.serve) hooks_.serve(std::move(stream), id);
  } catch (...) {
    status = 70;  // EX_SOFTWARE
  }
  if (hooks_.exit_child) hooks_.exit_child(status);
  ::_exit(status);
}

bool ForkingServer::CollectOne(pid_t pid, const EndedFn& on_end) {
  int status = 0;
  pid_t r;
  do {
    r = ::waitpid(pid, &status, WNOHANG);
  } while (r < 0 && errno == EINTR);
  if (r == 0) return false;  // still running
  auto it = Find(pid);
  const uint64_t id = it->id;
  *it = children_.back();
  children_.pop_back();
  // r < 0 (ECHILD: someone else collected it): gone all the same, reported as a plain exit.
  if (on_end) on_end(Ended{pid, id, r > 0 ? status : 0});
  return true;
}

size_t ForkingServer::ScanAll(const EndedFn& on_end) {
  std::vector<pid_t> pids;
  pids.reserve(children_.size());
  for (const Child& c : children_) pids.push_back(c.pid);
  size_t n = 0;
  for (pid_t pid : pids) n += CollectOne(pid, on_end) ? 1 : 0;
  return n;
}

size_t ForkingServer::Reap(const EndedFn& on_end) {
  size_t n = 0;
  while (!children_.empty()) {
    // Which child ended, without collecting it: one waitid per ended child rather than a
    // waitpid per live child (a thousand idle children would make every exit cost a thousand
    // system calls).
    siginfo_t info{};
    int r;
    do {
      r = ::waitid(P_ALL, 0, &info, WEXITED | WNOHANG | WNOWAIT);
    } while (r < 0 && errno == EINTR);
    if (r < 0 || info.si_pid == 0) break;  // no child has ended (or none at all)
    if (Find(info.si_pid) != children_.end() && CollectOne(info.si_pid, on_end)) {
      ++n;
      continue;
    }
    // Another child of the process ended first and stays for its owner: ask for each of ours.
    n += ScanAll(on_end);
    break;
  }
  return n;
}

std::vector<ForkingServer::Child>::iterator ForkingServer::Find(pid_t pid) {
  return std::find_if(children_.begin(), children_.end(),
                      [pid](const Child& c) { return c.pid == pid; });
}

void ForkingServer::SignalAll(int sig) {
  for (const Child& c : children_) ::kill(c.pid, sig);
}

void ForkingServer::WaitAll(std::chrono::steady_clock::time_point kill_after, const EndedFn& on_end,
                            std::chrono::milliseconds poll) {
  bool killed = false;
  while (!children_.empty()) {
    Reap(on_end);
    if (children_.empty()) break;
    if (!killed && std::chrono::steady_clock::now() >= kill_after) {
      SignalAll(SIGKILL);
      killed = true;
    }
    std::this_thread::sleep_for(poll);
  }
}

}  // namespace core::server
