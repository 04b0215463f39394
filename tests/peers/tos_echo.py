#!/usr/bin/env python3
"""An echo that is not sonde, answering with its own TOS byte and TTL: `tos_echo.py ADDR TOS
TTL` binds ADDR port 0, prints the port, and echoes every datagram until killed."""
import socket
import sys


def main():
    addr, tos, ttl = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    v6 = ":" in addr
    s = socket.socket(socket.AF_INET6 if v6 else socket.AF_INET, socket.SOCK_DGRAM)
    if v6:
        s.setsockopt(socket.IPPROTO_IPV6, 67, tos)  # IPV6_TCLASS
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, ttl)
    else:
        s.setsockopt(socket.IPPROTO_IP, socket.IP_TOS, tos)
        s.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, ttl)
    s.bind((addr, 0))
    print(s.getsockname()[1], flush=True)
    while True:
        data, peer = s.recvfrom(65535)
        s.sendto(data, peer)


if __name__ == "__main__":
    main()
