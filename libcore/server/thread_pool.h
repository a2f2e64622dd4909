#pragma once

// A fixed set of worker threads that run submitted tasks in order (threadpool mode: the loop
// owns the sockets and submits a readable one). Every thread is joined.

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace core::server {

class WorkerPool {
 public:
  // `on_thread_start` runs once on each worker before its first task (a signal mask...).
  explicit WorkerPool(size_t threads, std::function<void()> on_thread_start = {});
  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;
  // Joins every worker: call Stop() first and only when it returned 0.
  ~WorkerPool();

  void Submit(std::function<void()> task);

  // Runs what is queued, takes no more, and waits up to `grace` for the workers to finish.
  // Returns how many are still running a task (user code that does not return).
  size_t Stop(std::chrono::milliseconds grace);

 private:
  void Work();

  const std::function<void()> on_thread_start_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::condition_variable idle_cv_;
  std::deque<std::function<void()>> tasks_;  // guarded by mu_
  bool stopping_ = false;                    // guarded by mu_
  size_t running_ = 0;                       // guarded by mu_: workers not yet returned
  std::vector<std::thread> threads_;
};

}  // namespace core::server
