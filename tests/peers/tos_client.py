#!/usr/bin/env python3
"""A client that is not sonde: `tos_client.py HOST PORT TOS COUNT` sends COUNT datagrams with
the TOS byte (IPv6: traffic class) TOS and prints, as one JSON list, the TOS each answer came
back with, read from the kernel's control messages (1 s for each answer at most)."""
import json
import socket
import struct
import sys

IP_RECVTOS, IP_TOS = 13, 1
IPV6_RECVTCLASS, IPV6_TCLASS = 66, 67


def main():
    host, port, tos, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    v6 = ":" in host
    s = socket.socket(socket.AF_INET6 if v6 else socket.AF_INET, socket.SOCK_DGRAM)
    if v6:
        s.setsockopt(socket.IPPROTO_IPV6, IPV6_TCLASS, tos)
        s.setsockopt(socket.IPPROTO_IPV6, IPV6_RECVTCLASS, 1)
    else:
        s.setsockopt(socket.IPPROTO_IP, IP_TOS, tos)
        s.setsockopt(socket.IPPROTO_IP, IP_RECVTOS, 1)
    s.settimeout(1)
    seen = []
    for i in range(count):
        s.sendto(b"tos probe %d" % i, (host, port))
        try:
            _, ancillary, _, _ = s.recvmsg(2048, 256)
        except socket.timeout:
            continue
        for level, kind, data in ancillary:
            if (level, kind) == (socket.IPPROTO_IP, IP_TOS):
                seen.append(data[0])
            elif (level, kind) == (socket.IPPROTO_IPV6, IPV6_TCLASS):
                seen.append(struct.unpack("i", data[:4])[0])
    print(json.dumps(seen), flush=True)


if __name__ == "__main__":
    main()
