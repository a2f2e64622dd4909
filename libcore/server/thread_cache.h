#pragma once

// Threads that outlive their task, for the threaded mode: still one thread per live connection,
// but a thread whose connection ended parks and serves the next one, so a connection costs no
// clone(), stack mmap/munmap, thread exit or join, and per-thread state (an embedded
// interpreter's thread state, allocator caches) stays warm. The most recently parked thread is
// reused first; parked threads beyond `max_parked` exit at once, the others after `park_timeout`
// without work. Threads that exited are joined by the next Run() or by the destructor.

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <functional>
#include <list>
#include <mutex>
#include <thread>
#include <vector>

#include "libcore/base/result.h"

namespace core::server {

class ThreadCache {
 public:
  struct Options {
    size_t max_parked = 32;
    std::chrono::milliseconds park_timeout{30'000};
    // Runs once on each new thread before its first task (a signal mask, a name...).
    std::function<void()> on_thread_start;
  };

  ThreadCache() : ThreadCache(Options{}) {}
  explicit ThreadCache(Options options);
  ThreadCache(const ThreadCache&) = delete;
  ThreadCache& operator=(const ThreadCache&) = delete;
  // Wakes the parked threads and joins every thread: the tasks must have returned (a task that
  // never returns blocks here; callers that cannot wait exit the process instead).
  ~ThreadCache();

  // Runs `task` on a parked thread, or on a new one. Fails only when no thread can be created.
  // Tasks catch their own exceptions (one that escapes is dropped).
  Status Run(std::function<void()> task);

  // Threads parked now, and threads created over the cache's life (for tests and stats).
  size_t parked() const;
  size_t threads_created() const;

 private:
  struct Worker {
    std::thread thread;
    std::condition_variable cv;
    std::function<void()> task;  // guarded by mu_: the next task, set by Run()
    bool exited = false;         // guarded by mu_
  };
  void Loop(Worker* w);
  void JoinExited();  // mu_ not held

  const Options options_;
  mutable std::mutex mu_;
  std::list<Worker> workers_;    // guarded by mu_ (elements are pinned: threads hold pointers)
  std::vector<Worker*> parked_;  // guarded by mu_: LIFO, the warmest thread last
  size_t exited_ = 0;            // guarded by mu_: workers that exited and are not joined
  size_t created_ = 0;           // guarded by mu_
  bool stopping_ = false;        // guarded by mu_
};

}  // namespace core::server
