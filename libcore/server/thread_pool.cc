#include "libcore/server/thread_pool.h"

#include <exception>

namespace core::server {

WorkerPool::WorkerPool(size_t threads, std::function<void()> on_thread_start)
    : on_thread_start_(std::move(on_thread_start)) {
  running_ = threads;
  threads_.reserve(threads);
  for (size_t i = 0; i < threads; ++i) threads_.emplace_back([this] { Work(); });
}

WorkerPool::~WorkerPool() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  for (auto& t : threads_) t.join();
}

void WorkerPool::Submit(std::function<void()> task) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) return;
    tasks_.push_back(std::move(task));
  }
  cv_.notify_one();
}

size_t WorkerPool::Stop(std::chrono::milliseconds grace) {
  std::unique_lock<std::mutex> lock(mu_);
  stopping_ = true;
  cv_.notify_all();
  idle_cv_.wait_for(lock, grace, [this] { return running_ == 0; });
  return running_;
}

void WorkerPool::Work() {
  if (on_thread_start_) on_thread_start_();
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    cv_.wait(lock, [this] { return stopping_ || !tasks_.empty(); });
    if (tasks_.empty()) break;  // stopping, and the queue is drained
    auto task = std::move(tasks_.front());
    tasks_.pop_front();
    lock.unlock();
    try {
      task();
    } catch (const std::exception&) {  // tasks catch at their own top level
    }
    lock.lock();
  }
  --running_;
  idle_cv_.notify_all();
}

}  // namespace core::server
