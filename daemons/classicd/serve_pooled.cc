// Threadpool mode: the loop owns every client socket and hands a readable one to a fixed pool of
// workers (core::server::PooledServer), which step the connection's ClassicSession.

#include "daemons/classicd/service.h"

namespace classicd {

using core::UniqueFd;
using core::log::Level;

// The session the pool steps: the connection's stream and its ClassicSession over it.
class ClassicService::PoolSession final : public core::server::PooledServer::Session {
 public:
  // Throws what the object space throws.
  PoolSession(std::unique_ptr<core::transport::Stream> stream, const Peer& peer, uint64_t id,
              const SessionSettings& settings, const SpaceFactory& make_space, const ConnLog& log)
      : stream_(std::move(stream)), session_(*stream_, peer, id, settings, make_space, log) {}

  bool ServeAvailable() override { return session_.ServeAvailable(); }
  void Finish() override { session_.Finish(); }
  void Shutdown() override { session_.Shutdown(); }
  std::optional<std::chrono::milliseconds> FrameTimeLeft() const override {
    return session_.FrameTimeLeft();
  }

 private:
  std::unique_ptr<core::transport::Stream> stream_;
  ClassicSession session_;  // over stream_: destroyed first
};

core::Status ClassicService::StartPool() {
  core::server::PooledServer::Hooks hooks;
  hooks.open = [this](UniqueFd fd, uint64_t id) { return PoolOpen(std::move(fd), id); };
  hooks.closed = [this](uint64_t id) {
    Peer peer;
    {
      std::lock_guard<std::mutex> lock(pool_mu_);
      auto it = pool_peers_.find(id);
      peer = std::move(it->second);
      pool_peers_.erase(it);
    }
    conn_log_(Level::info, peer, id, "goodbye {}", peer.repr);
    Release(peer.host);
  };
  hooks.idle_timeout = [this] {
    return std::chrono::milliseconds(std::chrono::seconds(limits_.idle_timeout.load()));
  };
  hooks.on_idle_timeout = [this](uint64_t id) {
    Peer peer;
    {
      std::lock_guard<std::mutex> lock(pool_mu_);
      peer = pool_peers_.at(id);
    }
    conn_log_(Level::info, peer, id, "idle timeout: nothing from {} for {} s", peer.repr,
              limits_.idle_timeout.load());
  };
  core::server::PooledServer::Options options;
  options.threads = static_cast<size_t>(o_.threads);
  // A TLS handshake or an authenticator waits on the peer for up to tls_handshake_timeout; a
  // hosted service's on_connect may call the client, which waits for the client's first frame.
  // One setup thread does all of them, in that order.
  options.setup_thread = tls_ != nullptr || authenticator_ != nullptr || hosted_ != nullptr;
  options.on_thread_start = BlockStopSignals;
  pool_ =
      std::make_unique<core::server::PooledServer>(ctx_.loop, std::move(hooks), std::move(options));
  return pool_->Start();
}

std::unique_ptr<core::server::PooledServer::Session> ClassicService::PoolOpen(UniqueFd fd,
                                                                              uint64_t id) {
  Peer peer;
  {
    std::lock_guard<std::mutex> lock(pool_mu_);
    peer = pool_peers_.at(id);
  }
  auto end_early = [&] {
    {
      std::lock_guard<std::mutex> lock(pool_mu_);
      pool_peers_.erase(id);
    }
    Release(peer.host);
    return nullptr;
  };
  std::unique_ptr<PoolSession> session;
  try {
    auto stream = OpenSocket(std::move(fd), peer, id);
    if (!stream || !Authenticate(*stream, peer, id)) return end_early();
    session = std::make_unique<PoolSession>(std::move(stream), peer, id, Settings(/*idle=*/false),
                                            make_space_, conn_log_);
  } catch (const std::exception& e) {
    conn_log_(Level::err, peer, id, "connection {} closed: internal error: {}", peer.repr,
              e.what());
    return end_early();
  }
  ClassicSession::Welcome(conn_log_, peer, id);
  return session;
}

}  // namespace classicd
