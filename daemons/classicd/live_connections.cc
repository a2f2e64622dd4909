#include "daemons/classicd/live_connections.h"

#include <fcntl.h>
#include <sys/socket.h>

namespace classicd {

LiveConnections::Entry::Entry(LiveConnections& set) : set_(set) {
  std::lock_guard<std::mutex> lock(set_.mu_);
  it_ = set_.slots_.emplace(set_.slots_.end());
}

LiveConnections::Entry::~Entry() {
  {
    std::lock_guard<std::mutex> lock(set_.mu_);
    set_.slots_.erase(it_);
  }
  set_.cv_.notify_all();
}

void LiveConnections::Entry::Handshaking(int fd) {
  core::UniqueFd dup(::fcntl(fd, F_DUPFD_CLOEXEC, 3));
  std::lock_guard<std::mutex> lock(set_.mu_);
  if (set_.shut_) {
    (void)::shutdown(fd, SHUT_RDWR);
    return;
  }
  it_->handshake = std::move(dup);
}

void LiveConnections::Entry::Opened(core::transport::Stream& stream) {
  core::UniqueFd handshake;  // closed outside the lock
  std::lock_guard<std::mutex> lock(set_.mu_);
  handshake = std::move(it_->handshake);
  it_->stream = &stream;
  if (set_.shut_) stream.Shutdown();
}

void LiveConnections::Shutdown() {
  std::lock_guard<std::mutex> lock(mu_);
  shut_ = true;
  for (Slot& s : slots_) {
    if (s.stream != nullptr) {
      s.stream->Shutdown();
    } else if (s.handshake) {
      (void)::shutdown(s.handshake.get(), SHUT_RDWR);
    }
  }
}

size_t LiveConnections::Wait(std::chrono::steady_clock::time_point deadline) {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait_until(lock, deadline, [this] { return slots_.empty(); });
  return slots_.size();
}

size_t LiveConnections::size() const {
  std::lock_guard<std::mutex> lock(mu_);
  return slots_.size();
}

}  // namespace classicd
