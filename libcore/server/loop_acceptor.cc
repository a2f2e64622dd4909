#include "libcore/server/loop_acceptor.h"

#include <cerrno>
#include <string>
#include <system_error>

#include <event2/event.h>

namespace core::server {

LoopAcceptor::LoopAcceptor(daemon::EventLoop& loop, std::vector<int> listeners, Handler handler,
                           Options options)
    : listeners_(std::move(listeners)), handler_(std::move(handler)), options_(std::move(options)) {
  for (size_t i = 0; i < listeners_.size(); ++i) {
    watches_.push_back(std::make_unique<daemon::IoWatch>(loop, listeners_[i], EV_READ, true,
                                                         [this, i](short) { OnAcceptable(i); }));
  }
}

void LoopAcceptor::Start() {
  for (auto& w : watches_) w->Start();
}

void LoopAcceptor::Stop() {
  stopped_ = true;
  for (auto& w : watches_) w->Stop();
}

void LoopAcceptor::OnAcceptable(size_t listener) {
  for (size_t i = 0; i < options_.max_per_wake && !stopped_; ++i) {
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    const int fd =
        ::accept4(listeners_[listener], reinterpret_cast<sockaddr*>(&ss), &len, SOCK_CLOEXEC);
    if (fd < 0) {
      const int err = errno;
      if (TransientAcceptError(err)) return;
      if (options_.on_accept_error) {
        options_.on_accept_error(listener, Error::Io(ErrnoText(err)));
      }
      return;  // EMFILE and friends: the next readiness retries
    }
    handler_(UniqueFd(fd), ss, len, listener);
  }
}

}  // namespace core::server
