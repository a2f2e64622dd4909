#pragma once

// The daemon's listening sockets: bound from the options (TCP, and a Unix socket beside it), or
// inherited from socket activation. Each has TCP_NODELAY when it is TCP, so the connections
// accepted from it have it already.

#include <cstdint>
#include <string>
#include <vector>

#include <sys/types.h>

#include "libcore/base/result.h"
#include "libcore/base/unique_fd.h"
#include "libcore/transport/address.h"
#include "libcore/transport/exposure.h"

namespace classicd {

class Listeners {
 public:
  struct Listener {
    core::UniqueFd fd;
    std::string what;      // "[127.0.0.1]:18812", "unix:/run/x.sock" or "inherited fd"
    bool nodelay = false;  // TCP_NODELAY set: the connections it accepts inherit it
  };

  Listeners() = default;
  Listeners(const Listeners&) = delete;
  Listeners& operator=(const Listeners&) = delete;

  // Binds host:port (port 0: any free one).
  // `backlog` as listen(2) takes it (core::transport::kMaxBacklog: the kernel's maximum).
  core::Status ListenTcp(const std::string& host, uint16_t port, int backlog);
  // Binds the Unix socket `path` with permissions `mode`; Close() removes it.
  core::Status ListenUnix(const std::string& path, mode_t mode, int backlog);
  // A listening socket inherited from socket activation.
  void Adopt(core::UniqueFd fd, std::string what);

  bool empty() const { return list_.empty(); }
  size_t size() const { return list_.size(); }
  const Listener& operator[](size_t i) const { return list_[i]; }
  // The descriptors, borrowed by the acceptors until Close().
  std::vector<int> fds() const;
  // The address listener `i` is bound to (the real port after binding port 0).
  core::transport::SocketAddress LocalAddress(size_t i) const;
  // The port of the last TCP listener, or 0 when there is none.
  uint16_t TcpPort() const;
  // The listeners as the exposure rule sees them (core::transport::CheckExposure).
  std::vector<core::transport::BoundSocket> Bound() const;

  // Closes every listener and removes the Unix socket's path. Idempotent.
  void Close();
  // In a forked child, which serves one connection: closes the descriptors only.
  void CloseInChild();

 private:
  void Add(core::UniqueFd fd, std::string what);

  std::vector<Listener> list_;
  std::string unix_path_;  // removed by Close()
};

}  // namespace classicd
