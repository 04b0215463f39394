#!/usr/bin/env python3
"""The ten-line stdlib UDP echo server: what sonde ping must work against, unmodified.

usage: scripts/py-echo.py [HOST] [PORT]   (default 127.0.0.1, port 0 = any free port)
Prints "listening on HOST:PORT" once bound.
"""
import socket
import sys

if len(sys.argv) > 1 and sys.argv[1] in ("-h", "--help"):
    print(__doc__.strip())
    sys.exit(0)

host = sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1"
port = int(sys.argv[2]) if len(sys.argv) > 2 else 0
family = socket.AF_INET6 if ":" in host else socket.AF_INET
sock = socket.socket(family, socket.SOCK_DGRAM)
sock.bind((host, port))
print("listening on %s:%d" % (host, sock.getsockname()[1]), flush=True)
while True:
    data, peer = sock.recvfrom(65535)
    sock.sendto(data, peer)
