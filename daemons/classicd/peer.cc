#include "daemons/classicd/peer.h"

namespace classicd {

Peer Peer::FromAddress(const core::transport::SocketAddress& addr) {
  Peer p;
  if (addr.family() == AF_UNIX) {
    p.repr = "'unix'";
    p.host = p.text = "unix";
  } else {
    p.repr = addr.PythonRepr();
    p.host = addr.host();
    p.text = addr.ToString();
  }
  return p;
}

}  // namespace classicd
