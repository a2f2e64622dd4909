#pragma once

// Who a connection comes from, in the spellings the log lines and the limits use, and the log
// lines that name it (with the journal fields RPYC_PEER, RPYC_CONN and RPYC_MODE).

#include <cstdint>
#include <optional>
#include <string>
#include <utility>

#include "daemons/classicd/classicd.h"
#include "daemons/classicd/objspace/objspace.h"
#include "libcore/log/log.h"
#include "libcore/transport/address.h"

namespace classicd {

struct Peer {
  std::string repr;      // "('127.0.0.1', 5000)": the reference's log spelling
  std::string host;      // "127.0.0.1": RPYC_PEER and the per-peer limit key
  std::string text;      // "127.0.0.1:5000"
  bool nodelay = false;  // accepted from a listener with TCP_NODELAY: the socket has it too
  // Its slot among the handshakes in progress (Admission; 0: none): a TLS handshake and an
  // authenticator count until both have ended (HandshakeEnded(), Authenticate()).
  uint64_t handshake = 0;
  // A Unix-socket peer's SO_PEERCRED, read when unix_allow_users/unix_allow_groups are set.
  struct UnixCred {
    int64_t uid = 0;
    int64_t gid = 0;
    int64_t pid = 0;
  };
  std::optional<UnixCred> unix_cred;
  // Who the connection's authentication says the peer is (a TLS client certificate, an
  // authenticator, SO_PEERCRED): conn._config["credentials"] of the hosted or classic service.
  // Set on the thread that serves it (ClassicService::Authenticate) before the session starts;
  // null: None.
  objspace::CredentialsPtr credentials;

  // A socket's peer; a Unix socket's is "unix".
  static Peer FromAddress(const core::transport::SocketAddress& addr);
  // A peer without an address ("stdio").
  static Peer Named(const std::string& name) {
    Peer p;
    p.repr = p.host = p.text = name;
    return p;
  }
};

// Log lines about one connection.
class ConnLog {
 public:
  ConnLog() = default;
  ConnLog(core::log::Logger log, Mode mode) : log_(std::move(log)), mode_(ModeName(mode)) {}

  template <typename... Args>
  void operator()(core::log::Level level, const Peer& peer, uint64_t id,
                  fmt::format_string<Args...> fmt, Args&&... args) const {
    if (!log_.enabled(level)) return;
    const std::string conn = std::to_string(id);
    log_.Write(level, {{"RPYC_PEER", peer.host}, {"RPYC_CONN", conn}, {"RPYC_MODE", mode_}},
               fmt::format(fmt, std::forward<Args>(args)...));
  }

 private:
  core::log::Logger log_;
  const char* mode_ = "";
};

}  // namespace classicd
