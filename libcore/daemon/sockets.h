#pragma once

// Socket helpers for daemons: a bound UDP socket from (host, port) (TCP listeners:
// transport::ListenTcp), sockets inherited through socket activation (sd_listen_fds), and address
// text for logs and registry entries.

#include <cstdint>
#include <string>
#include <vector>

#include <sys/socket.h>

#include "libcore/base/result.h"
#include "libcore/base/unique_fd.h"

namespace core::daemon {

// Creates a non-blocking, close-on-exec UDP socket bound to host:port. An IPv6 host ("::")
// also receives IPv4 (IPV6_V6ONLY off), as Python's socket does.
Result<UniqueFd> BindUdp(const std::string& host, uint16_t port);

struct InheritedSocket {
  UniqueFd fd;
  int type = 0;  // SOCK_DGRAM or SOCK_STREAM
  bool listening = false;
  std::string name;  // LISTEN_FDNAMES entry
};

// Takes the sockets passed by systemd (LISTEN_FDS/LISTEN_PID), sets them non-blocking and
// unsets the environment. Empty when not socket-activated.
Result<std::vector<InheritedSocket>> TakeInheritedSockets();

// The local port of a bound socket (0 on error).
uint16_t LocalPort(int fd);

// "127.0.0.1" / "::1" / "::ffff:127.0.0.1": the host as Python's getpeername()[0] gives it.
std::string HostText(const sockaddr_storage& addr);
// "127.0.0.1:5000" or "[::1]:5000".
std::string PeerText(const sockaddr_storage& addr);

// A peer's address, formatted only when asked: on a fast path, formatting costs more than
// answering the request.
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
    if (!have_text_) text_ = PeerText(*addr_), have_text_ = true;
    return text_;
  }

 private:
  const sockaddr_storage* addr_ = nullptr;
  mutable std::string host_;
  mutable std::string text_;
  mutable bool have_host_ = false;
  mutable bool have_text_ = false;
};

}  // namespace core::daemon
