#include "libcore/transport/listener.h"

#include <cerrno>

#include <netinet/in.h>
#include <sys/socket.h>

namespace core::transport {
namespace {

Error SysError(const std::string& what, int err) { return Error::Io(what + ": " + ErrnoText(err)); }

}  // namespace

Result<UniqueFd> ListenTcp(const std::string& host, uint16_t port, int backlog) {
  auto addr = SocketAddress::Resolve(host, port);
  if (!addr) return Fail(addr.error());
  UniqueFd fd(::socket(addr->family(), SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!fd) return Fail(SysError("socket", errno));
  int one = 1;
  if (::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0) {
    return Fail(SysError("setsockopt(SO_REUSEADDR)", errno));
  }
  if (addr->family() == AF_INET6) {
    int zero = 0;  // dual stack for "::"; harmless for specific addresses
    (void)::setsockopt(fd.get(), IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
  }
  if (::bind(fd.get(), addr->sockaddr_ptr(), addr->length()) != 0) {
    return Fail(SysError("bind " + addr->ToString(), errno));
  }
  if (::listen(fd.get(), backlog) != 0) return Fail(SysError("listen " + addr->ToString(), errno));
  return fd;
}

Result<TcpListener> TcpListener::Listen(const std::string& host, uint16_t port, int backlog) {
  auto fd = ListenTcp(host, port, backlog);
  if (!fd) return Fail(fd.error());
  sockaddr_storage ss{};
  socklen_t len = sizeof(ss);
  if (::getsockname(fd->get(), reinterpret_cast<sockaddr*>(&ss), &len) != 0) {
    return Fail(SysError("getsockname", errno));
  }
  return TcpListener(std::move(*fd), SocketAddress(reinterpret_cast<sockaddr*>(&ss), len));
}

Result<std::optional<Accepted>> TcpListener::Accept() {
  for (;;) {
    sockaddr_storage ss{};
    socklen_t len = sizeof(ss);
    const int fd = ::accept4(fd_.get(), reinterpret_cast<sockaddr*>(&ss), &len, SOCK_CLOEXEC);
    if (fd >= 0) {
      return Accepted{UniqueFd(fd), SocketAddress(reinterpret_cast<sockaddr*>(&ss), len)};
    }
    const int err = errno;
    switch (err) {
      case EINTR:
        continue;
      case EAGAIN:
      case ECONNABORTED:
      case EPROTO:
        return std::optional<Accepted>();
      default:
        return Fail(SysError("accept on " + local_.ToString(), err));
    }
  }
}

}  // namespace core::transport
