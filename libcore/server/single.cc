#include "libcore/server/single.h"

#include <cerrno>
#include <cstdint>
#include <string>
#include <system_error>

#include <event2/event.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

namespace core::server {

SingleConnection::SingleConnection(daemon::EventLoop& loop, Hooks hooks, Options options)
    : loop_(loop),
      hooks_(std::move(hooks)),
      options_(std::move(options)),
      wake_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {}

SingleConnection::~SingleConnection() {
  if (thread_.joinable()) thread_.join();
}

Status SingleConnection::Start(int raw_fd) {
  if (!wake_) {
    return Fail(Error::Io("eventfd: " + ErrnoText(errno)));
  }
  wake_watch_ = std::make_unique<daemon::IoWatch>(loop_, wake_.get(), EV_READ, true,
                                                  [this](short) { OnWake(); });
  wake_watch_->Start();
  std::lock_guard<std::mutex> lock(mu_);
  raw_fd_ = raw_fd;
  try {
    thread_ = std::thread([this] { Run(); });
  } catch (const std::system_error& e) {  // EAGAIN: too many threads
    return Fail(Error::Io(std::string("cannot start a thread: ") + e.what()));
  }
  started_ = true;
  return {};
}

void SingleConnection::Run() {
  if (options_.on_thread_start) options_.on_thread_start();
  try {
    auto stream = hooks_.open();
    if (stream) hooks_.serve(*stream);
    std::lock_guard<std::mutex> closing(mu_);
    closing_ = true;  // before the stream closes the socket: its number may be reused
  } catch (const std::exception& e) {
    if (hooks_.on_exception) hooks_.on_exception(e);
  }
  if (hooks_.closed) hooks_.closed();
  {
    std::lock_guard<std::mutex> lock(mu_);
    closing_ = true;
    done_ = true;
  }
  cv_.notify_all();
  const uint64_t one = 1;
  (void)!::write(wake_.get(), &one, sizeof one);
}

void SingleConnection::OnWake() {
  uint64_t n = 0;
  (void)!::read(wake_.get(), &n, sizeof n);
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!done_ || stopping_) return;
  }
  if (hooks_.on_end) hooks_.on_end();
}

void SingleConnection::Shutdown() {
  std::lock_guard<std::mutex> lock(mu_);
  stopping_ = true;
  if (!closing_ && raw_fd_ >= 0) (void)::shutdown(raw_fd_, SHUT_RDWR);
}

bool SingleConnection::Wait(std::chrono::steady_clock::time_point deadline) {
  std::unique_lock<std::mutex> lock(mu_);
  return cv_.wait_until(lock, deadline, [this] { return !started_ || done_; });
}

}  // namespace core::server
