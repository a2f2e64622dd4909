#include "libcore/server/thread_cache.h"

#include <algorithm>
#include <exception>
#include <system_error>

namespace core::server {

ThreadCache::ThreadCache(Options options) : options_(std::move(options)) {}

ThreadCache::~ThreadCache() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
    for (Worker* w : parked_) w->cv.notify_one();
  }
  for (Worker& w : workers_) {
    if (w.thread.joinable()) w.thread.join();
  }
}

Status ThreadCache::Run(std::function<void()> task) {
  JoinExited();
  std::lock_guard<std::mutex> lock(mu_);
  if (!parked_.empty()) {
    Worker* w = parked_.back();
    parked_.pop_back();
    w->task = std::move(task);
    w->cv.notify_one();
    return {};
  }
  Worker& w = workers_.emplace_back();
  w.task = std::move(task);
  try {
    w.thread = std::thread([this, &w] { Loop(&w); });
  } catch (const std::system_error& e) {  // EAGAIN: too many threads
    workers_.pop_back();
    return Fail(Error::Io(std::string("cannot start a thread: ") + e.what()));
  }
  ++created_;
  return {};
}

void ThreadCache::Loop(Worker* w) {
  if (options_.on_thread_start) options_.on_thread_start();
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    std::function<void()> task = std::move(w->task);
    w->task = nullptr;
    lock.unlock();
    try {
      task();
    } catch (...) {  // tasks catch at their own top level; nothing may unwind out of a thread
    }
    task = nullptr;  // the task's captures die on this thread, before it parks
    lock.lock();
    if (stopping_ || parked_.size() >= options_.max_parked) break;
    parked_.push_back(w);
    const bool woken = w->cv.wait_for(lock, options_.park_timeout,
                                      [w, this] { return w->task != nullptr || stopping_; });
    if (w->task != nullptr) continue;  // Run() took it off parked_
    (void)woken;
    parked_.erase(std::find(parked_.begin(), parked_.end(), w));
    break;
  }
  w->exited = true;
  ++exited_;
}

void ThreadCache::JoinExited() {
  std::list<Worker> done;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (exited_ == 0) return;
    for (auto it = workers_.begin(); it != workers_.end();) {
      auto next = std::next(it);
      if (it->exited) done.splice(done.end(), workers_, it);
      it = next;
    }
    exited_ = 0;
  }
  for (Worker& w : done) w.thread.join();  // they have left Loop(): joins at once
}

size_t ThreadCache::parked() const {
  std::lock_guard<std::mutex> lock(mu_);
  return parked_.size();
}

size_t ThreadCache::threads_created() const {
  std::lock_guard<std::mutex> lock(mu_);
  return created_;
}

}  // namespace core::server
