#pragma once

// An IPv4 or IPv6 socket address, with the spellings the daemons log; PeerAddress, a view of one
// that formats it only when asked.

#include <cstdint>
#include <string>
#include <utility>

#include <sys/socket.h>

#include "libcore/base/result.h"

namespace core::transport {

// "127.0.0.1" / "::1" / "::ffff:127.0.0.1": the host as Python's getpeername()[0] gives it;
// "?" for families other than AF_INET/AF_INET6.
std::string HostText(const sockaddr_storage& addr);
// "127.0.0.1:5000" or "[::1]:5000"; "?" for other families.
std::string AddressText(const sockaddr_storage& addr);

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
  std::string host() const { return HostText(storage_); }  // numeric: "127.0.0.1", "::1"

  // "127.0.0.1:51234" or "[::1]:51234".
  std::string ToString() const { return AddressText(storage_); }
  // The way Python prints a socket address tuple: "('127.0.0.1', 51234)" or
  // "('::1', 51234, 0, 0)", as the reference server's log lines show it.
  std::string PythonRepr() const;

  const sockaddr* sockaddr_ptr() const { return reinterpret_cast<const sockaddr*>(&storage_); }
  socklen_t length() const { return length_; }

 private:
  sockaddr_storage storage_{};
  socklen_t length_ = 0;
};

// A peer's address, formatted only when asked: on a fast path (a registry's UDP QUERY),
// formatting costs more than answering the request.
class PeerAddress {
 public:
  // Borrows `addr`, which must outlive this object.
  explicit PeerAddress(const sockaddr_storage& addr) : addr_(&addr) {}
  // Already formatted (tests, and callers that have text only).
  PeerAddress(std::string host, std::string text)
      : host_(std::move(host)), text_(std::move(text)), have_host_(true), have_text_(true) {}

  const std::string& host() const {
    if (!have_host_) host_ = HostText(*addr_), have_host_ = true;
    return host_;
  }
  const std::string& text() const {
    if (!have_text_) text_ = AddressText(*addr_), have_text_ = true;
    return text_;
  }

 private:
  const sockaddr_storage* addr_ = nullptr;
  mutable std::string host_;
  mutable std::string text_;
  mutable bool have_host_ = false;
  mutable bool have_text_ = false;
};

}  // namespace core::transport
