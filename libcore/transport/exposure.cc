#include "libcore/transport/exposure.h"

#include <cerrno>
#include <cstring>

#include <netinet/in.h>

#include "libcore/transport/address.h"

namespace core::transport {

Reach ReachOf(const sockaddr* sa, socklen_t len) {
  if (sa == nullptr || len < static_cast<socklen_t>(sizeof(sa_family_t))) return Reach::kLocal;
  if (sa->sa_family == AF_UNIX) return Reach::kLocal;
  if (sa->sa_family == AF_INET && len >= static_cast<socklen_t>(sizeof(sockaddr_in))) {
    sockaddr_in in{};
    std::memcpy(&in, sa, sizeof in);
    return (ntohl(in.sin_addr.s_addr) >> 24) == 127 ? Reach::kLoopback : Reach::kRemote;
  }
  if (sa->sa_family == AF_INET6 && len >= static_cast<socklen_t>(sizeof(sockaddr_in6))) {
    sockaddr_in6 in6{};
    std::memcpy(&in6, sa, sizeof in6);
    if (IN6_IS_ADDR_LOOPBACK(&in6.sin6_addr)) return Reach::kLoopback;
    if (IN6_IS_ADDR_V4MAPPED(&in6.sin6_addr) && in6.sin6_addr.s6_addr[12] == 127) {
      return Reach::kLoopback;
    }
    return Reach::kRemote;
  }
  return Reach::kRemote;  // an unknown family: assume the worst
}

Verdict Decide(Reach reach, bool verifies_clients, bool allow_unauthenticated_remote) {
  if (reach != Reach::kRemote || verifies_clients) return Verdict::kOk;
  return allow_unauthenticated_remote ? Verdict::kWarn : Verdict::kRefuse;
}

Result<std::vector<std::string>> CheckExposure(std::span<const BoundSocket> sockets,
                                               const ExposurePolicy& policy) {
  std::vector<std::string> warnings;
  for (const BoundSocket& s : sockets) {
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    if (::getsockname(s.fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) {
      const int err = errno;
      if (err == ENOTSOCK) continue;  // a pipe (stdio mode): local
      return Fail(Error::Io("getsockname on " + s.what + ": " + ErrnoText(err)));
    }
    const Reach reach = ReachOf(reinterpret_cast<const sockaddr*>(&ss), len);
    const Verdict v = Decide(reach, policy.verifies_clients, policy.allow_unauthenticated_remote);
    if (v == Verdict::kOk) continue;
    const SocketAddress addr(reinterpret_cast<const sockaddr*>(&ss), len);
    const std::string where =
        s.what +
        (s.what.find(addr.host()) == std::string::npos ? " (" + addr.ToString() + ")" : "");
    const std::string why = "listener " + where +
                            " is reachable beyond loopback without client-certificate " +
                            "verification: anyone who can connect runs code as this daemon's user";
    if (v == Verdict::kWarn) {
      warnings.push_back(why + " (allowed by allow_unauthenticated_remote)");
      continue;
    }
    return Fail(Error::Config(
        why +
        "; refusing to serve. Bind a loopback address (--host 127.0.0.1) or a Unix socket, "
        "require client certificates (--ssl-cafile with --ssl-keyfile/--ssl-certfile), or, "
        "if that is really intended, set allow_unauthenticated_remote = true "
        "(--allow-unauthenticated-remote)"));
  }
  return warnings;
}

}  // namespace core::transport
