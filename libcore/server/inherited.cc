#include "libcore/server/inherited.h"

#include <fcntl.h>

namespace core::server {

InheritedStreams TakeStreamSockets(std::vector<daemon::InheritedSocket>& sockets) {
  InheritedStreams out;
  for (auto& s : sockets) {
    if (!s.fd || s.type != SOCK_STREAM) continue;
    if (s.listening) {
      out.listening.push_back(std::move(s.fd));
    } else if (!out.connected) {
      out.connected = std::move(s.fd);
    }
  }
  return out;
}

transport::SocketAddress PrepareConnected(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (::getpeername(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) len = 0;
  const int flags = ::fcntl(fd, F_GETFL);
  ::fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
  return {reinterpret_cast<const sockaddr*>(&ss), len};
}

}  // namespace core::server
