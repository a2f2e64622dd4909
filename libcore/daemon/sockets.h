#pragma once

// Socket helpers for daemons: bind/listen from (host, port), sockets inherited through
// socket activation (sd_listen_fds), and address text for logs and registry entries.

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
// Same for a listening TCP socket with SO_REUSEADDR.
Result<UniqueFd> ListenTcp(const std::string& host, uint16_t port, int backlog);

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

}  // namespace core::daemon
