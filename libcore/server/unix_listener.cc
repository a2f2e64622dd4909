#include "libcore/server/unix_listener.h"

#include <algorithm>
#include <cerrno>
#include <system_error>

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

namespace core::server {

Result<UniqueFd> ListenUnix(const std::string& path, mode_t mode, int backlog) {
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  if (path.size() >= sizeof sa.sun_path) {
    return Fail(Error::Config("unix socket path too long: " + path));
  }
  std::copy(path.begin(), path.end(), sa.sun_path);
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!fd) return Fail(Error::Io("socket: " + ErrnoText(errno)));
  struct stat st {};
  if (::lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) {
      return Fail(Error::Config("unix socket path " + path + " exists and is not a socket"));
    }
    // A stale socket (nobody accepting) is replaced; a live one is an error.
    UniqueFd probe(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (::connect(probe.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0) {
      return Fail(Error::Config("unix socket " + path + " is in use by another server"));
    }
    ::unlink(path.c_str());
  }
  // The mode comes from the umask at bind(), never from a chmod() of the path afterwards, which
  // would follow a symlink swapped in between (and change its target's mode). umask is
  // process-wide: see the header on when this may be called.
  const mode_t saved = ::umask(~mode & 0777);
  const int bound = ::bind(fd.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa);
  const int bind_errno = errno;
  ::umask(saved);
  if (bound != 0) return Fail(Error::Io("bind unix:" + path + ": " + ErrnoText(bind_errno)));
  if (::listen(fd.get(), backlog) != 0) {
    return Fail(Error::Io("listen unix:" + path + ": " + ErrnoText(errno)));
  }
  return fd;
}

}  // namespace core::server
