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

PeerAddress PrepareConnected(int fd) {
  PeerAddress p;
  socklen_t len = sizeof p.addr;
  (void)::getpeername(fd, reinterpret_cast<sockaddr*>(&p.addr), &len);
  p.len = len;
  const int flags = ::fcntl(fd, F_GETFL);
  ::fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
  return p;
}

}  // namespace core::server
