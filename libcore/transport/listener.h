#pragma once

// Listening TCP sockets (IPv4 or IPv6): ListenTcp() is the one place the tree binds and listens
// on TCP (both daemons); TcpListener adds accepting, for tests and tools. Accepted connections
// are blocking and close-on-exec.

#include <cstdint>
#include <optional>
#include <string>

#include "libcore/base/result.h"
#include "libcore/base/unique_fd.h"
#include "libcore/transport/address.h"

namespace core::transport {

// The backlog that asks for the kernel's maximum (net.core.somaxconn; 4096 by default since
// Linux 5.4): listen(2) caps what it is given at somaxconn, so the largest int is that cap.
// The `listen-backlog` option's 0 means this.
inline constexpr int kMaxBacklog = 0x7fffffff;

// Binds `host`:`port` (a name is resolved, "" is 127.0.0.1; port 0 picks a free one) with
// SO_REUSEADDR and listens with `backlog` (kMaxBacklog: the kernel's maximum; the Python
// reference asks for socket.SOMAXCONN): a non-blocking, close-on-exec socket. An IPv6 wildcard
// ("::") also accepts IPv4 clients. Errors: Error::Config for a host that does not resolve,
// Error::Io ("bind 127.0.0.1:18812: Address already in use") otherwise.
Result<UniqueFd> ListenTcp(const std::string& host, uint16_t port, int backlog = kMaxBacklog);

struct Accepted {
  UniqueFd fd;
  SocketAddress peer;
};

class TcpListener {
 public:
  // ListenTcp(), remembering the bound address.
  static Result<TcpListener> Listen(const std::string& host, uint16_t port,
                                    int backlog = kMaxBacklog);

  // Accepts one pending connection. The listening socket is non-blocking, so callers poll() fd()
  // first; nullopt means nothing was pending after all (EAGAIN, or the client already left).
  Result<std::optional<Accepted>> Accept();

  int fd() const { return fd_.get(); }
  // The bound address, with the real port when 0 was asked for.
  const SocketAddress& local_address() const { return local_; }

 private:
  TcpListener(UniqueFd fd, SocketAddress local) : fd_(std::move(fd)), local_(local) {}

  UniqueFd fd_;
  SocketAddress local_;
};

}  // namespace core::transport
