#!/usr/bin/env python3
"""A stdlib UDP echo client with WINDOW datagrams in flight: the Python side of the "Python echo
pair" in scripts/bench-peers.sh. Each reply is answered by the next datagram (closed loop); a
window that stalls for 200 ms is refilled. Loopback only.

usage: scripts/py-ping.py HOST PORT SECS WINDOW SIZE
Prints {"round_trips_per_s": N, "received": N, "seconds": S} as JSON.
"""
import ipaddress
import json
import socket
import sys
import time

if len(sys.argv) != 6 or sys.argv[1] in ("-h", "--help"):
    print(__doc__.strip())
    sys.exit(0 if len(sys.argv) > 1 and sys.argv[1] in ("-h", "--help") else 2)

host, port = sys.argv[1], int(sys.argv[2])
secs, window, size = float(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
if not ipaddress.ip_address(host).is_loopback:
    sys.exit("py-ping: loopback addresses only")
family = socket.AF_INET6 if ":" in host else socket.AF_INET
sock = socket.socket(family, socket.SOCK_DGRAM)
sock.connect((host, port))
sock.settimeout(0.2)
payload = b"p" * size


def refill():
    try:
        for _ in range(window):
            sock.send(payload)
    except ConnectionRefusedError:  # nothing listens (yet): the next wait times out
        time.sleep(0.2)


refill()
received = 0
start = time.monotonic()
end = start + secs
while True:
    try:
        sock.recv(65535)
        received += 1
        sock.send(payload)
        if received % 256 or time.monotonic() < end:
            continue
    except (socket.timeout, ConnectionRefusedError):
        if time.monotonic() < end:
            refill()
            continue
    break
elapsed = time.monotonic() - start
print(json.dumps({"round_trips_per_s": round(received / elapsed), "received": received,
                  "seconds": round(elapsed, 3)}))
