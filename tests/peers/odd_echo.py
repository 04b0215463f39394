#!/usr/bin/env python3
"""A deliberately misbehaving UDP echo server for sonde's integration tests (loopback only).

usage: odd_echo.py MODE [PORT]
  fixed      answer every datagram with the same 5 bytes (a non-echo server)
  truncate   echo all but the last byte
  alter      echo with the last byte flipped
  dup        echo every datagram twice
  swap       hold each even-numbered datagram and send it after the next one (reordering)
  delay      echo every 5th datagram 150 ms late, the rest at once
Prints "listening on 127.0.0.1:PORT" once bound. Exits after 60 s of silence.
"""
import socket
import sys
import time

if len(sys.argv) < 2 or sys.argv[1] in ("-h", "--help"):
    print(__doc__.strip())
    sys.exit(0 if len(sys.argv) > 1 else 2)
mode = sys.argv[1]
port = int(sys.argv[2]) if len(sys.argv) > 2 else 0
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.bind(("127.0.0.1", port))
sock.settimeout(0.01)
print("listening on 127.0.0.1:%d" % sock.getsockname()[1], flush=True)
held = None
delayed = []  # (due, data, peer)
count = 0
last = time.monotonic()
while time.monotonic() - last < 60:
    now = time.monotonic()
    for item in [d for d in delayed if d[0] <= now]:
        sock.sendto(item[1], item[2])
        delayed.remove(item)
    try:
        data, peer = sock.recvfrom(65535)
    except socket.timeout:
        continue
    last = time.monotonic()
    count += 1
    if mode == "fixed":
        sock.sendto(b"hello", peer)
    elif mode == "truncate":
        sock.sendto(data[:-1], peer)
    elif mode == "alter":
        sock.sendto(data[:-1] + bytes([data[-1] ^ 0xFF]), peer)
    elif mode == "dup":
        sock.sendto(data, peer)
        sock.sendto(data, peer)
    elif mode == "swap":
        if held is None:
            held = (data, peer)
        else:
            sock.sendto(data, peer)
            sock.sendto(held[0], held[1])
            held = None
    elif mode == "delay":
        if count % 5 == 0:
            delayed.append((time.monotonic() + 0.15, data, peer))
        else:
            sock.sendto(data, peer)
    else:
        sys.exit("unknown mode " + mode)
