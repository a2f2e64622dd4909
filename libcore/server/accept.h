#pragma once

// What the accepting modes share: the handler an accepted connection goes to, and which accept()
// failures belong to one peer rather than to the listener.

#include <cerrno>
#include <cstddef>
#include <functional>

#include <sys/socket.h>

#include "libcore/base/unique_fd.h"

namespace core::server {

// Takes one accepted connection (a blocking, close-on-exec socket); `listener` indexes the
// listening fds the acceptor was given.
using AcceptHandler =
    std::function<void(UniqueFd fd, const sockaddr_storage& peer, socklen_t len, size_t listener)>;

// accept() failures that belong to one peer (it gave up) or to a signal: try the next connection.
// Anything else (EMFILE, ENOBUFS...) is the listener's problem.
inline bool TransientAcceptError(int err) {
  return err == EAGAIN || err == EWOULDBLOCK || err == EINTR || err == ECONNABORTED ||
         err == EPROTO;
}

}  // namespace core::server
