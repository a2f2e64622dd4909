#pragma once

// Forking mode: a child process per connection. The parent only forks, counts and reaps; what
// the child runs (and how the process is made ready to fork: an embedded interpreter's fork
// hooks, its end without finalising) comes in as hooks, so this file knows nothing of Python.
//
// Children are reaped per pid: Reap() peeks at the next ended child (waitid WNOWAIT) and
// collects it only when it is one of ours, so other children of the process are left alone.
// Each reaped child is reported once with its wait status (exit code or killing signal).
// Single-threaded: call everything from one thread (the loop thread).

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include <sys/types.h>

#include "libcore/base/result.h"
#include "libcore/transport/stream.h"

namespace core::server {

class ForkingServer {
 public:
  struct Hooks {
    // Makes the child: the pid in the parent, 0 in the child. Default: ::fork().
    std::function<Result<pid_t>()> fork;
    // In the child, after the signals are reset: closes what the child must not hold (the
    // listening sockets). May be empty.
    std::function<void()> in_child;
    // In the child: serves the connection (owned by the child now); `id` is the one given to
    // Spawn().
    std::function<void(std::unique_ptr<transport::Stream> stream, uint64_t id)> serve;
    // Ends the child after `serve` returns; must not return. Default: _exit(status).
    std::function<void(int status)> exit_child;
  };
  struct Options {
    // Set back to SIG_DFL in the child (the parent's handlers belong to the parent's loop);
    // the child's signal mask is cleared too.
    std::vector<int> default_signals;
  };
  // A reaped child: `status` is the waitpid() status.
  struct Ended {
    pid_t pid = 0;
    uint64_t id = 0;
    int status = 0;
  };
  using EndedFn = std::function<void(const Ended&)>;

  ForkingServer(Hooks hooks, Options options);
  ForkingServer(const ForkingServer&) = delete;
  ForkingServer& operator=(const ForkingServer&) = delete;
  // Does not wait for the children (see StopAll).
  ~ForkingServer() = default;

  // Forks a child that serves `stream` (a connection already set up: an established TLS session
  // stays established); the parent's copy is destroyed either way, which must send nothing to the
  // peer (TlsStream and SocketStream send nothing when destroyed). Returns the child's pid. Never
  // returns in the child.
  Result<pid_t> Spawn(std::unique_ptr<transport::Stream> stream, uint64_t id);

  // Collects every child of ours that has ended, without blocking; `on_end` for each. Returns
  // how many were collected.
  size_t Reap(const EndedFn& on_end);

  // Sends `sig` to every live child.
  void SignalAll(int sig);

  // Reaps until no child is left, polling every `poll`; children still alive at `kill_after`
  // get SIGKILL. (For shutdown: send SIGTERM first with SignalAll.)
  void WaitAll(std::chrono::steady_clock::time_point kill_after, const EndedFn& on_end,
               std::chrono::milliseconds poll = std::chrono::milliseconds(20));

  size_t size() const { return children_.size(); }
  bool empty() const { return children_.empty(); }

 private:
  [[noreturn]] void RunChild(std::unique_ptr<transport::Stream> stream, uint64_t id);
  bool CollectOne(pid_t pid, const EndedFn& on_end);  // true when `pid` was ours and reaped
  size_t ScanAll(const EndedFn& on_end);

  Hooks hooks_;
  const Options options_;
  struct Child {
    pid_t pid;
    uint64_t id;
  };
  // Live children. A vector searched linearly, not a map: the parent allocates nothing per
  // child (each heap page the parent writes between two forks stays behind as a private copy in
  // the children forked before), and a search of a thousand entries is cheap beside a waitpid.
  std::vector<Child> children_;
  std::vector<Child>::iterator Find(pid_t pid);
};

}  // namespace core::server
