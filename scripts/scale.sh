#!/usr/bin/env bash
# scale.sh: how one pinger copes with many targets, on loopback. One wildcard-bound sonde echo
# answers N targets (127.2.0.1, 127.2.0.2, ...: the echo answers each from the address asked),
# one `sonde ping --targets` probes each RATE times a second for SECONDS; prints the pinger's
# loss, foreign datagrams, CPU, RSS at nine tenths of the run and peak RSS. Bounded in time;
# stops everything it starts.
#
#   scripts/scale.sh TARGETS RATE SECONDS [extra sonde ping options]
#   scripts/scale.sh 10000 1 90
set -euo pipefail

die() { echo "scale.sh: $*" >&2; exit 2; }
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() { sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; }
if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then usage; exit 0; fi
[[ $# -ge 3 ]] || { usage >&2; exit 2; }
targets=$1 rate=$2 seconds=$3
shift 3
[[ "$targets" =~ ^[0-9]+$ && "$targets" -ge 1 && "$targets" -le 200000 ]] \
  || die "TARGETS: a count from 1 to 200000, not '$targets'"
[[ "$seconds" =~ ^[0-9]+$ && "$seconds" -ge 2 && "$seconds" -le 3600 ]] \
  || die "SECONDS: 2 to 3600, not '$seconds'"
[[ -x /usr/bin/time ]] || die "needs /usr/bin/time (apt-get install time) for the peak RSS"

sonde=$(sonde_bin)
work=$(mktemp -d)
echo_pid=""
cleanup() {
  [[ -n "$echo_pid" ]] && kill "$echo_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

port=$(python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$sonde" echo --bind "0.0.0.0:$port" --limit-per-source off --limit-total off -q \
  > /dev/null 2> "$work/echo.err" &
echo_pid=$!
python3 - "$targets" "$port" > "$work/targets" <<'EOF'
import sys
n, port = int(sys.argv[1]), sys.argv[2]
for i in range(n):
    print(f"127.{2 + i // 62500}.{(i // 250) % 250}.{1 + i % 250}:{port}")
EOF

/usr/bin/time -v "$sonde" ping --targets "$work/targets" -r "$rate" -d "${seconds}s" --json -q "$@" \
  > "$work/summary.json" 2> "$work/ping.err" &
timed=$!
sleep $((seconds * 9 / 10))
pinger=$(pgrep -P "$timed" || true)
running=$(awk '/^VmRSS:/ {printf "%.1f MiB", $2 / 1024}' "/proc/${pinger:-0}/status" 2>/dev/null || echo "-")
wait "$timed" || { cat "$work/ping.err" >&2; die "sonde ping failed"; }

python3 - "$work/summary.json" "$work/ping.err" "$targets" "$rate" "$seconds" "$running" <<'EOF'
import json, re, sys
summary, err, targets, rate, seconds, running = sys.argv[1:]
s = json.load(open(summary))
t = open(err).read()
cpu = re.search(r"Percent of CPU this job got: (\d+%)", t).group(1)
peak = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", t).group(1)) / 1024
print("| targets x rate | probes | loss | foreign | pinger CPU | RSS running | RSS peak |")
print("|---|---|---|---|---|---|---|")
print(f"| {targets} x {rate}/s, -d {seconds}s | {s['sent']} | {s['lost']} | {s['foreign']} "
      f"| {cpu} | {running} | {peak:.1f} MiB |")
EOF
