#!/usr/bin/env python3
"""The classic exercise's first server, as students write it: `text_server.py ADDR` binds ADDR
port 0, prints the port, then decodes every datagram as UTF-8 (a binary one raises and ends it,
status 1) and answers each with a fixed line. Exits 0 after a datagram reading "stop"."""
import socket
import sys


def main():
    addr = sys.argv[1]
    family = socket.AF_INET6 if ":" in addr else socket.AF_INET
    s = socket.socket(family, socket.SOCK_DGRAM)
    s.bind((addr, 0))
    print(s.getsockname()[1], flush=True)
    while True:
        data, peer = s.recvfrom(65535)
        message = data.decode("utf-8")
        if message == "stop":
            return
        s.sendto(b"Hello from the server", peer)


if __name__ == "__main__":
    main()
