#!/usr/bin/env bash
# bench-peers.sh: sonde side by side with the peers users would otherwise pick, and with a
# bare-syscall reference (examples/bare.rs, no engine), back to back on loopback, same message
# size and duration. Installs nothing: it checks which peers are present and says what it skips.
set -Eeuo pipefail

usage() {
  cat <<'EOF'
usage: scripts/bench-peers.sh [--secs N] [--size BYTES] [--quick]

Runs, on 127.0.0.1, each for --secs seconds (default 5) with --size-byte messages (default 64):
  1. ping-pong, one in flight, blocking: RTT p50/p99/p99.9 (full round trip for every tool)
  2. the same with busy-polling on both sides
  3. pipelined round trips/s, 64 in flight, no rate limit
  4. echo capacity: one client (sonde ping --wire sockperf, 2 flows x 64 in flight) against
     sockperf's server and sonde echo with 1 and 2 threads
  5. highest open-loop rate with < 0.1% loss, searched the same way for sonde and sockperf
and prints one table, with ratios sonde / peer. Peers: sockperf, python3 (stdlib echo); the
reference: target/release/examples/bare (cargo build --release --examples). sonde's RTTs here use
user-space receive times (--timestamps user), as the peers do.
--quick: 2-second runs and a coarse rate search (a smoke test).
EOF
}

secs=5 size=64 quick=0
while (($#)); do
  case "$1" in
  --secs) secs="$2"; shift 2 ;;
  --size) size="$2"; shift 2 ;;
  --quick) quick=1 secs=2; shift ;;
  -h | --help) usage; exit 0 ;;
  *) echo "bench-peers.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
sonde="${SONDE:-$here/target/release/sonde}"
bare="${BARE:-$here/target/release/examples/bare}"
for bin in "$sonde" "$bare"; do
  [[ -x "$bin" ]] || { echo "bench-peers.sh: $bin is missing: run cargo build --release --examples" >&2; exit 1; }
done
have() { command -v "$1" >/dev/null; }
have python3 || { echo "bench-peers.sh: needs python3 (to read JSON)" >&2; exit 1; }

readonly P=127.0.0.1
pids=()
cleanup() {
  local pid
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT
start() { "$@" >/dev/null 2>&1 & pids+=($!); sleep 0.5; }
stop_all() { cleanup; pids=(); }

rows=()
row() { rows+=("$(printf '| %s | %s | %s | %s |' "$1" "$2" "$3" "$4")"); }
json() { python3 -c 'import json,sys; d=json.load(sys.stdin); print(eval(sys.argv[1], {}, {"d": d}))' "$1"; }
ratio() { python3 -c 'import sys; a, b = map(float, sys.argv[1:]); print("%.2f" % (a / b) if b else "-")' "$1" "$2"; }

# sockperf prints half the RTT unless --full-rtt; its percentiles are in microseconds.
sockperf_pct() { sed -n "s/.*percentile $1 = *\([0-9.]*\).*/\1/p" | head -n1; }

pingpong() { # label, busy (0/1)
  local label="$1" busy="$2" sflag="" pflag=""
  ((busy)) && sflag=busy pflag=--busy-poll
  start "$bare" echo 17101 $sflag
  local b
  b=$("$bare" ping "$P:17101" "$secs" 1 "$size" $sflag)
  stop_all
  start "$sonde" echo --bind "$P:17102" -q $pflag
  local s
  s=$("$sonde" ping "$P:17102" --inflight 1 --duration "${secs}s" --size "$size" --timestamps user --json $pflag)
  stop_all
  local s50 s99 s999 b50
  s50=$(json 'd["rtt"]["p50_us"]' <<<"$s"); s99=$(json 'd["rtt"]["p99_us"]' <<<"$s"); s999=$(json 'd["rtt"]["p999_us"]' <<<"$s")
  b50=$(json 'd["p50_us"]' <<<"$b")
  row "$label" "sonde pair" "p50 $s50 / p99 $s99 / p99.9 $s999 µs" "-"
  row "$label" "bare pair (limit)" "p50 $b50 / p99 $(json 'd["p99_us"]' <<<"$b") / p99.9 $(json 'd["p999_us"]' <<<"$b") µs" "sonde/limit p50 $(ratio "$s50" "$b50")"
  if have sockperf; then
    local nb=()
    ((busy)) && nb=(--nonblocked)
    start sockperf server -i "$P" -p 17103 "${nb[@]}"
    local out p50
    out=$(sockperf ping-pong -i "$P" -p 17103 -m "$size" -t "$secs" --full-rtt "${nb[@]}" 2>&1)
    stop_all
    p50=$(sockperf_pct 50.000 <<<"$out")
    row "$label" "sockperf pair" "p50 $p50 / p99 $(sockperf_pct 99.000 <<<"$out") / p99.9 $(sockperf_pct 99.900 <<<"$out") µs" "sonde/sockperf p50 $(ratio "$s50" "$p50")"
  else
    row "$label" "sockperf pair" "not installed" "-"
  fi
}

pipelined() {
  local label="pipelined, 64 in flight"
  start "$bare" echo 17201
  local b s py=""
  b=$("$bare" ping "$P:17201" "$secs" 64 "$size")
  stop_all
  start "$sonde" echo --bind "$P:17202" -q
  s=$("$sonde" ping "$P:17202" --inflight 64 --duration "${secs}s" --size "$size" --json)
  stop_all
  local srate brate
  srate=$(json 'round(d["received"] / d["duration_s"])' <<<"$s")
  brate=$(json 'd["round_trips_per_s"]' <<<"$b")
  row "$label" "sonde pair" "$srate round trips/s" "-"
  row "$label" "bare mmsg pair (limit)" "$brate round trips/s" "sonde/limit $(ratio "$srate" "$brate")"
  start python3 "$here/scripts/py-echo.py" "$P" 17203
  py=$("$sonde" ping "$P:17203" --inflight 64 --duration "${secs}s" --size "$size" --json)
  stop_all
  local prate
  prate=$(json 'round(d["received"] / d["duration_s"])' <<<"$py")
  row "$label" "stdlib Python echo (sonde client)" "$prate round trips/s" "sonde pair/python $(ratio "$srate" "$prate")"
  if have sockperf; then
    start sockperf server -i "$P" -p 17204
    local out rate
    out=$(sockperf ping-pong -i "$P" -p 17204 -m "$size" -t "$secs" -b 64 2>&1)
    stop_all
    rate=$(sed -n 's/.*\[Valid Duration\] RunTime=\([0-9.]*\) sec.*ReceivedMessages=\([0-9]*\).*/\2 \1/p' <<<"$out" |
      awk '{ printf "%d", $1 / $2 }')
    row "$label" "sockperf ping-pong -b 64 pair" "${rate:-?} round trips/s" "sonde/sockperf $(ratio "$srate" "${rate:-0}")"
  fi
}

capacity() {
  local label="echo capacity, same client" client
  client=("$sonde" ping --wire sockperf --flows 2 --inflight 64 --duration "${secs}s" --size "$size" --json)
  local base=""
  if have sockperf; then
    start sockperf server -i "$P" -p 17301
    base=$("${client[@]:0:2}" "$P:17301" "${client[@]:2}" | json 'round(d["received"] / d["duration_s"])')
    stop_all
    row "$label" "sockperf server" "$base datagrams/s" "-"
  fi
  local t out
  for t in 1 2; do
    start "$sonde" echo --bind "$P:1731$t" --wire sockperf --threads "$t" -q
    out=$("${client[@]:0:2}" "$P:1731$t" "${client[@]:2}" | json 'round(d["received"] / d["duration_s"])')
    stop_all
    row "$label" "sonde echo --threads $t" "$out datagrams/s" "${base:+sonde/sockperf $(ratio "$out" "$base")}"
  done
}

# Highest rate (from a fixed ladder) whose loss stays under 0.1%, every reply counted.
highest_rate() {
  local ladder=(10000 25000 50000 75000 100000 150000 200000 300000 400000)
  ((quick)) && ladder=(10000 50000 100000 200000)
  local best_s=0 best_p=0 r loss
  start "$sonde" echo --bind "$P:17401" -q
  for r in "${ladder[@]}"; do
    loss=$("$sonde" ping "$P:17401" --rate "$r" --duration "${secs}s" --size "$size" --json | json 'd["loss_pct"]')
    if python3 -c 'import sys; sys.exit(0 if float(sys.argv[1]) < 0.1 else 1)' "$loss"; then best_s=$r; else break; fi
  done
  stop_all
  row "highest rate, < 0.1% loss" "sonde pair" "$best_s probes/s" "-"
  if have sockperf; then
    start sockperf server -i "$P" -p 17402
    local out sent recv
    for r in "${ladder[@]}"; do
      out=$(sockperf under-load -i "$P" -p 17402 -m "$size" -t "$secs" --mps="$r" --reply-every 1 2>&1)
      sent=$(sed -n 's/.*\[Valid Duration\].*SentMessages=\([0-9]*\).*/\1/p' <<<"$out")
      recv=$(sed -n 's/.*\[Valid Duration\].*ReceivedMessages=\([0-9]*\).*/\1/p' <<<"$out")
      if [[ -n "$sent" && -n "$recv" ]] &&
        python3 -c 'import sys; s, r = map(int, sys.argv[1:]); sys.exit(0 if s and (s - r) / s < 0.001 else 1)' "$sent" "$recv"; then
        best_p=$r
      else
        break
      fi
    done
    stop_all
    row "highest rate, < 0.1% loss" "sockperf under-load pair" "$best_p msg/s" "sonde/sockperf $(ratio "$best_s" "$best_p")"
  fi
}

echo "bench-peers: ${secs}s runs, ${size}-byte messages, loopback; $(nproc) CPUs; $(uname -r)" >&2
pingpong "ping-pong, blocking" 0
pingpong "ping-pong, busy-poll" 1
pipelined
capacity
highest_rate
for peer in irtt iperf; do
  have "$peer" || rows+=("| $peer | - | not installed: skipped | - |")
done
echo "| test | tool | result | ratio |"
echo "|---|---|---|---|"
printf '%s\n' "${rows[@]}"
