/* The floor for UDP server CPU per query: a raw C loop that echoes a fixed reply to each
 * datagram (recvfrom + sendto, nothing else). Usage: udp_echo PORT */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>

int main(int argc, char** argv) {
  if (argc != 2) return 64;
  int fd = socket(AF_INET, SOCK_DGRAM, 0);
  struct sockaddr_in addr = {0};
  addr.sin_family = AF_INET;
  addr.sin_port = htons((unsigned short)atoi(argv[1]));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(fd, (struct sockaddr*)&addr, sizeof addr) != 0) {
    perror("bind");
    return 1;
  }
  static const char reply[] = "\x02"; /* brine () */
  char buf[1500];
  for (;;) {
    struct sockaddr_storage from;
    socklen_t len = sizeof from;
    if (recvfrom(fd, buf, sizeof buf, 0, (struct sockaddr*)&from, &len) < 0) continue;
    sendto(fd, reply, 1, 0, (struct sockaddr*)&from, len);
  }
}
