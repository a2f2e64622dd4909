// The one client every registry in the benchmark is driven by: N sequential QUERY requests
// (one outstanding), over UDP datagrams or one TCP connection per request, exactly as the rpyc
// clients send them. Prints "<count> <seconds> <failures>".

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "libcore/brine/brine.h"

namespace {

namespace brine = core::brine;

bool WaitReadable(int fd, int timeout_ms) {
  pollfd p{fd, POLLIN, 0};
  return poll(&p, 1, timeout_ms) == 1;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 5) {
    std::fprintf(stderr, "usage: %s udp|tcp PORT COUNT NAME\n", argv[0]);
    return 64;
  }
  const bool udp = std::strcmp(argv[1], "udp") == 0;
  sockaddr_in to{};
  to.sin_family = AF_INET;
  to.sin_port = htons(static_cast<uint16_t>(std::atoi(argv[2])));
  to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  const long count = std::atol(argv[3]);
  const std::string request =
      brine::Dump(brine::MakeTuple({brine::MakeStr("RPYC"), brine::MakeStr("QUERY"),
                                    brine::MakeTuple({brine::MakeStr(argv[4])})}));
  char buf[1500];
  long failures = 0;
  const int udp_fd = socket(AF_INET, SOCK_DGRAM, 0);
  const auto t0 = std::chrono::steady_clock::now();
  for (long i = 0; i < count; ++i) {
    if (udp) {
      sendto(udp_fd, request.data(), request.size(), 0, reinterpret_cast<sockaddr*>(&to),
             sizeof to);
      if (!WaitReadable(udp_fd, 2000) || recv(udp_fd, buf, sizeof buf, 0) <= 0) ++failures;
      continue;
    }
    const int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (connect(fd, reinterpret_cast<sockaddr*>(&to), sizeof to) != 0 ||
        send(fd, request.data(), request.size(), 0) != static_cast<ssize_t>(request.size()) ||
        !WaitReadable(fd, 5000) || recv(fd, buf, sizeof buf, 0) <= 0) {
      ++failures;
    }
    close(fd);
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("%ld %.6f %ld\n", count, seconds, failures);
  return failures == 0 ? 0 : 1;
}
