#pragma once

// Serving sockets inherited through socket activation (daemon::TakeInheritedSockets): listening
// stream sockets are served in the configured mode instead of binding; a connected one
// (Accept=yes) is served alone, like stdio (SingleConnection), and the process ends after it.

#include <vector>

#include <sys/socket.h>

#include "libcore/base/unique_fd.h"
#include "libcore/daemon/sockets.h"
#include "libcore/transport/address.h"

namespace core::server {

struct InheritedStreams {
  std::vector<UniqueFd> listening;  // in the order systemd passed them
  UniqueFd connected;               // the first connected one; invalid when there is none
};

// Takes the stream sockets out of `sockets`: every listening one, and the first connected one.
// Datagram sockets and further connected ones are left there.
InheritedStreams TakeStreamSockets(std::vector<daemon::InheritedSocket>& sockets);

// Readies an inherited connected socket for a blocking stream (TakeInheritedSockets made it
// non-blocking) and returns its peer's address (empty when getpeername() failed).
transport::SocketAddress PrepareConnected(int fd);

}  // namespace core::server
