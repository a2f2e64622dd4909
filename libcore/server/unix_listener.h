#pragma once

// A listening Unix stream socket at a path, for daemons that serve local clients besides (or
// instead of) TCP. The caller removes the file at shutdown.

#include <string>

#include <sys/types.h>

#include "libcore/base/result.h"
#include "libcore/base/unique_fd.h"

namespace core::server {

// Binds a non-blocking, close-on-exec socket to `path`, created with the permission bits `mode`
// (& 0777), and listens with `backlog`. A socket file nobody accepts on (a stale one) is
// replaced; a live one, or a file that is not a socket, is an Error::Config, as is a path too
// long for sockaddr_un. After a failed listen the bound file is left in place.
// The mode is set through the umask around bind() (no chmod of a path, which a symlink swapped
// in could redirect): umask is process-wide, so call this before other threads start, or while
// none of them creates files (the daemons bind before starting any thread).
Result<UniqueFd> ListenUnix(const std::string& path, mode_t mode, int backlog = 128);

}  // namespace core::server
