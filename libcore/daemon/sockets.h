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

}  // namespace core::daemon
