// Threaded mode: a thread per connection; the threads accept for themselves
// (core::server::ThreadedAcceptor) and serve what they accept on the spot.

#include "daemons/classicd/service.h"

namespace classicd {

using core::Error;
using core::UniqueFd;
using core::log::Level;

core::Status ClassicService::StartThreaded() {
  core::server::ThreadedAcceptor::Options a;
  a.on_thread_start = BlockStopSignals;
  a.on_accept_error = [this](size_t i, const Error& e) {
    log_.Error("accept on {}: {}", listeners_[i].what, e.message());
  };
  a.on_spawn_error = [this](const Error& e) { log_.Error("{}", e.message()); };
  acceptor_ = std::make_unique<core::server::ThreadedAcceptor>(
      listeners_.fds(),
      [this](UniqueFd fd, const sockaddr_storage& ss, socklen_t len, size_t i) {
        ServeAccepted(std::move(fd), ss, len, listeners_[i].nodelay);
      },
      std::move(a));
  return acceptor_->Start();
}

void ClassicService::ServeAccepted(UniqueFd fd, const sockaddr_storage& ss, socklen_t len,
                                   bool nodelay) {
  Peer peer = Peer::FromAddress({reinterpret_cast<const sockaddr*>(&ss), len});
  peer.nodelay = nodelay;
  const uint64_t id = ++next_id_;
  if (PreAuthLine(PreAuth::kAccepted))
    conn_log_(Level::info, peer, id, "accepted {} with fd {}", peer.repr, fd.get());
  if (!Allowed(fd.get(), ss, peer, id) || !Admit(peer)) return;  // closes fd
  std::unique_ptr<core::transport::Stream> stream;
  {
    LiveConnections::Entry live(live_);  // gone before the stream closes
    try {
      stream = OpenSocket(std::move(fd), peer, id, &live);
      if (stream && Authenticate(*stream, peer, id)) Serve(*stream, peer, id);
    } catch (const std::exception& e) {
      conn_log_(Level::err, peer, id, "connection {} closed: internal error: {}", peer.repr,
                e.what());
    }
    Release(peer.host);
  }
}

}  // namespace classicd
