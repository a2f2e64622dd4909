#pragma once

// A fixed set of worker threads that run submitted tasks in order (threadpool mode). The stop
// signals are blocked in the workers (the loop thread handles them), and every thread is joined.

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace classicd {

class WorkerPool {
 public:
  explicit WorkerPool(size_t threads);
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

  std::mutex mu_;
  std::condition_variable cv_;
  std::condition_variable idle_cv_;
  std::deque<std::function<void()>> tasks_;  // guarded by mu_
  bool stopping_ = false;                    // guarded by mu_
  size_t running_ = 0;                       // guarded by mu_: workers not yet returned
  std::vector<std::thread> threads_;
};

}  // namespace classicd
