#pragma once

// An IPv4 or IPv6 socket address, with the two spellings the daemons log.

#include <cstdint>
#include <string>

#include <sys/socket.h>

#include "libcore/base/result.h"

namespace core::transport {

class SocketAddress {
 public:
  SocketAddress() = default;
  // Copies `len` bytes of `sa`; families other than AF_INET/AF_INET6 print as "?".
  SocketAddress(const sockaddr* sa, socklen_t len);

  // Parses a numeric host ("127.0.0.1", "::1", "" = 127.0.0.1) or resolves a name, preferring
  // the first address getaddrinfo() returns.
  static Result<SocketAddress> Resolve(const std::string& host, uint16_t port);

  int family() const { return storage_.ss_family; }
  uint16_t port() const;
  std::string host() const;  // numeric: "127.0.0.1", "::1"

  // "127.0.0.1:51234" or "[::1]:51234".
  std::string ToString() const;
  // The way Python prints a socket address tuple: "('127.0.0.1', 51234)" or
  // "('::1', 51234, 0, 0)", as the reference server's log lines show it.
  std::string PythonRepr() const;

  const sockaddr* sockaddr_ptr() const { return reinterpret_cast<const sockaddr*>(&storage_); }
  socklen_t length() const { return length_; }

 private:
  sockaddr_storage storage_{};
  socklen_t length_ = 0;
};

}  // namespace core::transport
