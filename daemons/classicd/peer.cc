#include "daemons/classicd/peer.h"

namespace classicd {

Peer Peer::FromAddress(const core::transport::SocketAddress& addr) {
  if (addr.family() == AF_UNIX) return {"'unix'", "unix", "unix"};
  return {addr.PythonRepr(), addr.host(), addr.ToString()};
}

}  // namespace classicd
