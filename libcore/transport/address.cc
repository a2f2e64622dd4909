#include "libcore/transport/address.h"

#include <cstring>

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>

namespace core::transport {

SocketAddress::SocketAddress(const sockaddr* sa, socklen_t len) {
  if (len > sizeof(storage_)) len = sizeof(storage_);
  std::memcpy(&storage_, sa, len);
  length_ = len;
}

Result<SocketAddress> SocketAddress::Resolve(const std::string& host, uint16_t port) {
  const std::string name = host.empty() ? "127.0.0.1" : host;
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV;
  addrinfo* res = nullptr;
  const std::string service = std::to_string(port);
  const int rc = ::getaddrinfo(name.c_str(), service.c_str(), &hints, &res);
  if (rc != 0) {
    return Fail(Error::Config("cannot resolve host '" + name + "': " + ::gai_strerror(rc)));
  }
  SocketAddress out;
  for (const addrinfo* ai = res; ai != nullptr; ai = ai->ai_next) {
    if (ai->ai_family == AF_INET || ai->ai_family == AF_INET6) {
      out = SocketAddress(ai->ai_addr, ai->ai_addrlen);
      break;
    }
  }
  ::freeaddrinfo(res);
  if (out.length_ == 0) return Fail(Error::Config("no IPv4/IPv6 address for host '" + name + "'"));
  return out;
}

uint16_t SocketAddress::port() const {
  if (family() == AF_INET) return ntohs(reinterpret_cast<const sockaddr_in*>(&storage_)->sin_port);
  if (family() == AF_INET6) {
    return ntohs(reinterpret_cast<const sockaddr_in6*>(&storage_)->sin6_port);
  }
  return 0;
}

std::string HostText(const sockaddr_storage& addr) {
  if (addr.ss_family == AF_INET) {
    // By hand: glibc's inet_ntop formats IPv4 with sprintf (~1,800 instructions; a server
    // describes every peer, a registry every datagram's source).
    const auto* b = reinterpret_cast<const unsigned char*>(
        &reinterpret_cast<const sockaddr_in*>(&addr)->sin_addr.s_addr);
    std::string out;
    out.reserve(15);
    for (int i = 0; i < 4; ++i) {
      if (i > 0) out.push_back('.');
      const unsigned v = b[i];
      if (v >= 100) out.push_back(static_cast<char>('0' + v / 100));
      if (v >= 10) out.push_back(static_cast<char>('0' + v / 10 % 10));
      out.push_back(static_cast<char>('0' + v % 10));
    }
    return out;
  }
  if (addr.ss_family == AF_INET6) {
    char buf[INET6_ADDRSTRLEN] = {};
    ::inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(&addr)->sin6_addr, buf,
                sizeof buf);
    return buf;
  }
  return "?";
}

std::string AddressText(const sockaddr_storage& addr) {
  if (addr.ss_family == AF_INET) {
    return HostText(addr) + ":" +
           std::to_string(ntohs(reinterpret_cast<const sockaddr_in*>(&addr)->sin_port));
  }
  if (addr.ss_family == AF_INET6) {
    return "[" + HostText(addr) +
           "]:" + std::to_string(ntohs(reinterpret_cast<const sockaddr_in6*>(&addr)->sin6_port));
  }
  return "?";
}

std::string SocketAddress::PythonRepr() const {
  std::string out = "('" + host() + "', " + std::to_string(port());
  if (family() == AF_INET6) {
    const auto* sa6 = reinterpret_cast<const sockaddr_in6*>(&storage_);
    out += ", " + std::to_string(ntohl(sa6->sin6_flowinfo)) + ", " +
           std::to_string(sa6->sin6_scope_id);
  }
  return out + ")";
}

}  // namespace core::transport
