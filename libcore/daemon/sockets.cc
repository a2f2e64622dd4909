#include "libcore/daemon/sockets.h"

#include <cerrno>
#include <cstring>
#include <memory>
#include <system_error>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <systemd/sd-daemon.h>

namespace core::daemon {

Result<UniqueFd> BindUdp(const std::string& host, uint16_t port) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_DGRAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICHOST | AI_NUMERICSERV;
  addrinfo* res = nullptr;
  const std::string port_text = std::to_string(port);
  const int rc =
      getaddrinfo(host.empty() ? nullptr : host.c_str(), port_text.c_str(), &hints, &res);
  if (rc != 0) {
    return Fail(Error::Config("address '" + host + "': " + gai_strerror(rc)));
  }
  std::unique_ptr<addrinfo, decltype(&freeaddrinfo)> owner(res, &freeaddrinfo);
  const std::string what =
      "udp " + (res->ai_family == AF_INET6 ? "[" + host + "]" : host) + ":" + port_text;
  UniqueFd fd(::socket(res->ai_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd) return Fail(Error::Io("socket for " + what + ": " + ErrnoText(errno)));
  const int zero = 0;
  if (res->ai_family == AF_INET6) {
    setsockopt(fd.get(), IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero);
  }
  if (::bind(fd.get(), res->ai_addr, res->ai_addrlen) != 0) {
    return Fail(Error::Io("bind " + what + ": " + ErrnoText(errno)));
  }
  return fd;
}

Result<std::vector<InheritedSocket>> TakeInheritedSockets() {
  char** names = nullptr;
  const int n = sd_listen_fds_with_names(1, &names);
  if (n < 0) return Fail(Error::Io("sd_listen_fds: " + ErrnoText(-n)));
  std::vector<InheritedSocket> out;
  for (int i = 0; i < n; ++i) {
    InheritedSocket s;
    s.fd = UniqueFd(SD_LISTEN_FDS_START + i);
    if (names != nullptr && names[i] != nullptr) s.name = names[i];
    int type = 0;
    socklen_t len = sizeof type;
    if (getsockopt(s.fd.get(), SOL_SOCKET, SO_TYPE, &type, &len) != 0) {
      return Fail(Error::Io("inherited fd " + std::to_string(s.fd.get()) + " is not a socket"));
    }
    s.type = type;
    s.listening = sd_is_socket(s.fd.get(), AF_UNSPEC, SOCK_STREAM, 1) > 0;
    const int flags = fcntl(s.fd.get(), F_GETFL);
    fcntl(s.fd.get(), F_SETFL, flags | O_NONBLOCK);
    out.push_back(std::move(s));
  }
  if (names != nullptr) {
    for (int i = 0; i < n; ++i) free(names[i]);  // NOLINT(cppcoreguidelines-no-malloc): sd API
    free(names);                                 // NOLINT(cppcoreguidelines-no-malloc)
  }
  return out;
}

uint16_t LocalPort(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return 0;
  if (ss.ss_family == AF_INET) return ntohs(reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
  if (ss.ss_family == AF_INET6) return ntohs(reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port);
  return 0;
}

}  // namespace core::daemon
