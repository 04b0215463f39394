// A blocking UDP echo on 127.0.0.1 that takes on sonde echo's socket settings one at a time, to
// weigh each against a plain recvfrom/sendto echo from the same pinger (README, "Blocking
// ping-pong"). Not part of the build or the tests; for experiments on loopback only.
//
//   gcc -O2 -o /tmp/echo-variants scripts/lab/echo-variants.c
//   taskset -c 0 /tmp/echo-variants PORT [FLAGS] &
//   taskset -c 0 target/release/examples/bare ping 127.0.0.1:PORT 3 1 64
//
// FLAGS, any of: t  a 10 ms receive timeout (SO_RCVTIMEO, as a loop waiting in its reads sets)
//                m  read with recvmmsg, one slot, MSG_WAITFORONE, with a control buffer
//                r  read with recvmsg, with a control buffer
//                g  UDP_GRO on
//                b  4 MiB socket buffers
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/udp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>
#ifndef UDP_GRO
#define UDP_GRO 104
#endif

int main(int argc, char **argv) {
  if (argc < 2) return 2;
  const char *flags = argc > 2 ? argv[2] : "";
  int fd = socket(AF_INET, SOCK_DGRAM, 0);
  struct sockaddr_in local = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[1])),
                              .sin_addr.s_addr = htonl(0x7f000001)};
  if (fd < 0 || bind(fd, (void *)&local, sizeof local) < 0) return 1;
  int one = 1, big = 4 << 20;
  if (strchr(flags, 'b')) {
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &big, sizeof big);
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &big, sizeof big);
  }
  if (strchr(flags, 'g')) setsockopt(fd, IPPROTO_UDP, UDP_GRO, &one, sizeof one);
  if (strchr(flags, 't')) {
    struct timeval cap = {0, 10000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &cap, sizeof cap);
  }
  int mmsg = strchr(flags, 'm') != 0, msg = strchr(flags, 'r') != 0;
  static char buf[65536];
  static unsigned long long control[32];
  for (;;) {
    struct sockaddr_storage from;
    socklen_t fromlen = sizeof from;
    struct iovec iov = {buf, sizeof buf};
    struct msghdr h = {.msg_name = &from, .msg_namelen = sizeof from, .msg_iov = &iov,
                       .msg_iovlen = 1, .msg_control = control, .msg_controllen = sizeof control};
    ssize_t n;
    if (mmsg) {
      struct mmsghdr m = {.msg_hdr = h};
      n = recvmmsg(fd, &m, 1, MSG_WAITFORONE, 0) == 1 ? (ssize_t)m.msg_len : -1;
      fromlen = m.msg_hdr.msg_namelen;
    } else if (msg) {
      n = recvmsg(fd, &h, 0);
      fromlen = h.msg_namelen;
    } else {
      n = recvfrom(fd, buf, sizeof buf, 0, (void *)&from, &fromlen);
    }
    if (n >= 0) sendto(fd, buf, n, MSG_DONTWAIT, (void *)&from, fromlen);
  }
}
