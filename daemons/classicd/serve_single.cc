// Oneshot, stdio and an inherited connected socket (socket activation, Accept=yes): one
// connection, served on a thread of its own (core::server::SingleConnection), then the daemon
// ends.

#include <algorithm>
#include <cstring>

#include "daemons/classicd/service.h"
#include "libcore/server/inherited.h"
#include "libcore/transport/fd_stream.h"

namespace classicd {

using core::UniqueFd;
using core::log::Level;

void ClassicService::ServeInherited(UniqueFd connected) {
  const auto addr = core::server::PrepareConnected(connected.get());
  Peer peer = Peer::FromAddress(addr);
  log_.Info("serving an inherited connection from {}", peer.repr);
  Admit(peer);
  auto shared = std::make_shared<UniqueFd>(std::move(connected));
  const uint64_t id = ++next_id_;
  sockaddr_storage ss{};
  std::memcpy(&ss, addr.sockaddr_ptr(), std::min<size_t>(addr.length(), sizeof ss));
  if (addr.length() == 0) ss.ss_family = AF_UNIX;  // no address: not TCP
  // A refused peer is served nothing: the connection ends, and the daemon with it.
  const bool allowed = Allowed(shared->get(), ss, peer, id);
  ServeOne(
      [this, shared, peer, id, allowed]() mutable -> std::unique_ptr<core::transport::Stream> {
        if (!allowed) return nullptr;
        single_entry_.emplace(live_);
        return OpenSocket(std::move(*shared), peer, id, &*single_entry_);
      },
      peer, id);
}

void ClassicService::ServeStdio(StdioFds stdio) {
  Peer peer = Peer::Named("stdio");
  Admit(peer);
  ServeOne(
      [this, stdio]() -> std::unique_ptr<core::transport::Stream> {
        auto s = std::make_unique<core::transport::FdStream>(UniqueFd(stdio.in),
                                                             UniqueFd(stdio.out), "stdio");
        single_entry_.emplace(live_);
        single_entry_->Opened(*s);
        return s;
      },
      peer, ++next_id_);
}

void ClassicService::ServeOne(std::function<std::unique_ptr<core::transport::Stream>()> open,
                              Peer peer, uint64_t id) {
  core::server::SingleConnection::Hooks hooks;
  hooks.open = std::move(open);
  hooks.serve = [this, peer, id](core::transport::Stream& stream) mutable {
    if (Authenticate(stream, peer, id)) Serve(stream, peer, id);
    single_entry_.reset();  // before the stream closes
  };
  hooks.on_exception = [this, peer, id](const std::exception& e) {
    conn_log_(Level::err, peer, id, "connection {} closed: internal error: {}", peer.repr,
              e.what());
  };
  hooks.closed = [this, host = peer.host] {
    single_entry_.reset();
    Release(host);
  };
  hooks.on_end = [this] {
    if (admission_.active() == 0 && !stopping_) {
      ctx_.finish(o_.mode == Mode::kStdio ? "end of input" : "the connection ended");
    }
  };
  core::server::SingleConnection::Options options;
  options.on_thread_start = BlockStopSignals;
  single_conn_ = std::make_unique<core::server::SingleConnection>(ctx_.loop, std::move(hooks),
                                                                  std::move(options));
  // The connection is shut down through live_ (its stream), not through a descriptor number.
  if (auto started = single_conn_->Start(-1); !started) {
    log_.Error("cannot serve {}: {}", peer.repr, started.error().message());
    Release(peer.host);
  }
}

}  // namespace classicd
