#pragma once

// A listening TCP socket (IPv4 or IPv6). Accepted connections are blocking and close-on-exec.

#include <cstdint>
#include <optional>
#include <string>

#include "libcore/base/result.h"
#include "libcore/base/unique_fd.h"
#include "libcore/transport/address.h"

namespace core::transport {

struct Accepted {
  UniqueFd fd;
  SocketAddress peer;
};

class TcpListener {
 public:
  // Binds `host`:`port` (port 0 picks a free one) with SO_REUSEADDR and listens. An IPv6
  // wildcard ("::") also accepts IPv4 clients.
  static Result<TcpListener> Listen(const std::string& host, uint16_t port, int backlog = 128);

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
