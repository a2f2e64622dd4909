#pragma once

// Test-only helpers (never linked into the daemons): plain sockets for the serving-mode tests.

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "libcore/base/unique_fd.h"

namespace core::testing {

// A connected pair of Unix stream sockets (blocking, close-on-exec); invalid fds on failure.
struct SocketPair {
  UniqueFd client, server;
};

inline SocketPair MakeSocketPair() {
  int sv[2] = {-1, -1};
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) return {};
  return {UniqueFd(sv[0]), UniqueFd(sv[1])};
}

// A non-blocking listening socket on 127.0.0.1, any port; an invalid fd on failure.
struct LoopbackListener {
  UniqueFd fd;
  uint16_t port = 0;
};

inline LoopbackListener ListenLoopback() {
  LoopbackListener l;
  UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof sa;
  if (!fd || ::bind(fd.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0 ||
      ::listen(fd.get(), 64) != 0 ||
      ::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&sa), &len) != 0) {
    return l;
  }
  l.fd = std::move(fd);
  l.port = ntohs(sa.sin_port);
  return l;
}

// A blocking client socket connected to 127.0.0.1:`port`; an invalid fd on failure.
inline UniqueFd ConnectLoopback(uint16_t port) {
  UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  sa.sin_port = htons(port);
  if (!fd || ::connect(fd.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) return {};
  return fd;
}

// What `fd` has to read within `ms` (up to 256 bytes): "" when nothing came, "EOF" at its end.
inline std::string ReadSome(int fd, int ms) {
  pollfd p{fd, POLLIN, 0};
  if (::poll(&p, 1, ms) != 1) return "";
  char buf[256];
  const ssize_t n = ::read(fd, buf, sizeof buf);
  if (n <= 0) return "EOF";
  return {buf, static_cast<size_t>(n)};
}

// While it lives, this process has no free descriptor: RLIMIT_NOFILE is lowered to the highest
// open one and the numbers below it are filled, so accept() fails with EMFILE. ok() is false when
// the limit could not be set.
class NoFreeDescriptors {
 public:
  NoFreeDescriptors() {
    int highest = 0;
    for (const auto& e : std::filesystem::directory_iterator("/proc/self/fd")) {
      highest = std::max(highest, std::stoi(e.path().filename().string()));
    }
    if (::getrlimit(RLIMIT_NOFILE, &old_) != 0) return;
    rlimit low = old_;
    low.rlim_cur = static_cast<rlim_t>(highest) + 1;
    if (::setrlimit(RLIMIT_NOFILE, &low) != 0) return;
    ok_ = true;
    for (int fd = ::dup(0); fd >= 0; fd = ::dup(0)) fillers_.emplace_back(fd);
  }
  NoFreeDescriptors(const NoFreeDescriptors&) = delete;
  NoFreeDescriptors& operator=(const NoFreeDescriptors&) = delete;
  ~NoFreeDescriptors() {
    fillers_.clear();
    if (ok_) (void)::setrlimit(RLIMIT_NOFILE, &old_);
  }
  bool ok() const { return ok_; }

 private:
  rlimit old_{};
  bool ok_ = false;
  std::vector<UniqueFd> fillers_;
};

}  // namespace core::testing
