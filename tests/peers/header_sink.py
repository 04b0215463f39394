#!/usr/bin/env python3
"""A receiver that is not sonde: reads COUNT datagrams on ADDR PORT and prints, as one JSON
line, the TTL (hop limit) and TOS (traffic class) each arrived with, from the kernel's control
messages. It answers nothing."""
import json
import socket
import struct
import sys

# Options asked for, and the control messages they bring (Python lacks some of the names).
IP_RECVTTL, IP_RECVTOS, IP_TTL, IP_TOS = 12, 13, 2, 1
IPV6_RECVHOPLIMIT, IPV6_RECVTCLASS, IPV6_HOPLIMIT, IPV6_TCLASS = 51, 66, 52, 67


def main():
    addr, count = sys.argv[1], int(sys.argv[2])
    v6 = ":" in addr
    s = socket.socket(socket.AF_INET6 if v6 else socket.AF_INET, socket.SOCK_DGRAM)
    if v6:
        s.setsockopt(socket.IPPROTO_IPV6, IPV6_RECVHOPLIMIT, 1)
        s.setsockopt(socket.IPPROTO_IPV6, IPV6_RECVTCLASS, 1)
    else:
        s.setsockopt(socket.IPPROTO_IP, IP_RECVTTL, 1)
        s.setsockopt(socket.IPPROTO_IP, IP_RECVTOS, 1)
    s.bind((addr, 0))
    s.settimeout(10)
    print(s.getsockname()[1], flush=True)
    seen = {"ttl": [], "tos": []}
    for _ in range(count):
        _, ancillary, _, _ = s.recvmsg(2048, 256)
        for level, kind, data in ancillary:
            if (level, kind) in ((socket.IPPROTO_IP, IP_TTL), (socket.IPPROTO_IPV6, IPV6_HOPLIMIT)):
                seen["ttl"].append(struct.unpack("i", data[:4])[0])
            elif (level, kind) == (socket.IPPROTO_IP, IP_TOS):
                seen["tos"].append(data[0])
            elif (level, kind) == (socket.IPPROTO_IPV6, IPV6_TCLASS):
                seen["tos"].append(struct.unpack("i", data[:4])[0])
    print(json.dumps(seen), flush=True)


if __name__ == "__main__":
    main()
