/* The floor for the classic benchmark: a raw TCP echo server in C. It binds 127.0.0.1 on an
 * ephemeral port, prints the port, and echoes every byte on each connection (one thread each,
 * TCP_NODELAY, as rpyc-classicd). Usage: classic_echo */
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

static void* serve(void* arg) {
  int fd = (int)(long)arg;
  char buf[65536];
  for (;;) {
    ssize_t n = read(fd, buf, sizeof buf);
    if (n <= 0) break;
    for (ssize_t off = 0; off < n;) {
      ssize_t w = write(fd, buf + off, (size_t)(n - off));
      if (w <= 0) goto done;
      off += w;
    }
  }
done:
  close(fd);
  return NULL;
}

int main(void) {
  int ls = socket(AF_INET, SOCK_STREAM, 0);
  int one = 1;
  setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t len = sizeof sa;
  if (bind(ls, (struct sockaddr*)&sa, sizeof sa) != 0 || listen(ls, 64) != 0 ||
      getsockname(ls, (struct sockaddr*)&sa, &len) != 0) {
    perror("classic_echo");
    return 1;
  }
  printf("%d\n", ntohs(sa.sin_port));
  fflush(stdout);
  for (;;) {
    int fd = accept(ls, NULL, NULL);
    if (fd < 0) continue;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    pthread_t t;
    if (pthread_create(&t, NULL, serve, (void*)(long)fd) == 0) pthread_detach(t);
  }
}
