#include "daemons/classicd/peer.h"

#include "libcore/transport/address.h"

namespace classicd {

Peer Peer::FromAddress(const sockaddr_storage& ss, socklen_t len) {
  if (ss.ss_family == AF_UNIX) return {"'unix'", "unix", "unix"};
  const core::transport::SocketAddress addr(reinterpret_cast<const sockaddr*>(&ss), len);
  return {addr.PythonRepr(), addr.host(), addr.ToString()};
}

}  // namespace classicd
