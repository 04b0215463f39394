#!/usr/bin/env bash
# bench-peers.sh: sonde side by side with the peers users would otherwise pick, and with a
# bare-syscall reference (examples/bare.rs, no engine), back to back on loopback, same message
# size and duration. Installs nothing: it checks which peers are present and says what it skips.
set -Eeuo pipefail

usage() {
  cat <<'EOF'
usage: scripts/bench-peers.sh [--secs N] [--size BYTES] [--repeat N] [--quick] [--only LIST]

Runs, on 127.0.0.1, each for --secs seconds (default 5) with --size-byte messages (default 64),
tests 1-4 over --repeat rounds (default 3) with the tools taking turns, reporting medians:
  1. ping-pong, one in flight, blocking: RTT p50/p99/p99.9 (full round trip for every tool); as
     the scheduler places the pair, then (with taskset and 2+ CPUs) pinned on two CPUs and on one:
     unpinned, a blocking pair stays where its first round trips put it, stacked on one CPU
     (a few us) or spread over two (tens of us on a VM), and what decides that is whatever else
     ran at the start, not the tool
  2. the same with busy-polling on both sides
     (each also for sonde with kernel send and receive times, its default: the issue #15 goal is
     that pair's p50 at or below the bare pair's user-space one)
  3. pipelined round trips/s, 64 in flight, no rate limit (sonde's default toward loopback: runs
     of probes sent with UDP GSO; also shown with --gso off), against the bare mmsg pair,
     sockperf ping-pong -b 64, and a stdlib Python pair (scripts/py-echo.py + py-ping.py)
  4. echo capacity: one client (sonde ping --wire sockperf, 2 flows x 64 in flight) against
     sockperf's server and sonde echo with 1 and 2 threads; again with the client's GSO off
     (one datagram a message, nothing for the server to take coalesced)
  5. highest open-loop rate with < 0.1% loss, searched the same way for sonde and sockperf
  6. user-space instructions per round trip of each client, 64 in flight and one in flight, and
     per datagram of each server, the same two ways (valgrind's callgrind: exact counts, unmoved
     by load; skipped without valgrind)
  7. STAMP: the highest clean rate of sonde's pair and of stamp-suite's, and the STAMP
     reflector's capacity beside the plain echo's: both on one core, each flooded by its own
     client that never reads (GSO runs, and again one datagram a message)
  8. irtt's own tests, where installed: RTT p50 at 1 000/s, and the highest clean rate
and prints one table, with ratios sonde / peer. Peers: sockperf, irtt, stamp-suite, python3 (stdlib echo); the
reference: target/release/examples/bare (cargo build --release --bins --examples). sonde's ping-pong and
rate RTTs here use user-space times (--timestamps user), as the peers do, but for the row named
kernel times; the throughput rows run sonde with its defaults.
--quick: 2-second runs, one round, a coarser rate search (a smoke test).
--only LIST: just these tests, comma-separated: pingpong, pipelined, capacity, rate, cpu, stamp,
irtt (e.g. --only stamp).
EOF
}

secs=5 size=64 quick=0 repeat=3 only=""
while (($#)); do
  case "$1" in
  --secs) secs="$2"; shift 2 ;;
  --size) size="$2"; shift 2 ;;
  --repeat) repeat="$2"; shift 2 ;;
  --quick) quick=1 secs=2 repeat=1; shift ;;
  --only) only="$2"; shift 2 ;;
  -h | --help) usage; exit 0 ;;
  *) echo "bench-peers.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
sonde="${SONDE:-$here/target/release/sonde}"
bare="${BARE:-$here/target/release/examples/bare}"
for bin in "$sonde" "$bare"; do
  [[ -x "$bin" ]] || { echo "bench-peers.sh: $bin is missing: run cargo build --release --bins --examples" >&2; exit 1; }
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

# The instructions callgrind counted, from its report on stdin.
collected() { sed -n 's/.*Collected : \([0-9]*\).*/\1/p'; }

# sockperf prints half the RTT unless --full-rtt; its percentiles are in microseconds.
sockperf_pct() { sed -n "s/.*percentile $1 = *\([0-9.]*\).*/\1/p" | head -n1; }

# The median of its arguments, and "min-max" of them, for figures measured over several rounds.
median() { python3 -c 'import sys, statistics; print(("%.3f" % statistics.median(map(float, sys.argv[1:]))).rstrip("0").rstrip("."))' "$@"; }
spread() { python3 -c 'import sys; v = list(map(float, sys.argv[1:])); f = lambda x: ("%.6g" % x if x < 1e6 else "%.0f" % x); print("%s-%s" % (f(min(v)), f(max(v))))' "$@"; }

# The tools take turns, round after round: drift on a shared machine then hits every tool alike,
# and each figure is the median over the rounds (the range is shown beside throughputs). Idle
# blocking servers wait for their turn; busy-polling ones spin, so each runs only for its own.

pingpong() { # label, busy (0/1), [echo's CPU, pinger's CPU]
  local label="$1" busy="$2" sflag="" pflag="" nb=() r ep=() pp=()
  ((busy)) && sflag=busy pflag=--busy-poll nb=(--nonblocked)
  [[ -n "${3:-}" ]] && ep=(taskset -c "$3") pp=(taskset -c "$4")
  local s50=() s99=() s999=() k50=() k99=() k999=() b50=() b99=() b999=() p50=() p99=() p999=() b s out
  for ((r = 0; r < repeat; r++)); do
    start "${ep[@]}" "$bare" echo 17101 $sflag single
    b=$("${pp[@]}" "$bare" ping "$P:17101" "$secs" 1 "$size" $sflag)
    stop_all
    b50+=("$(json 'd["p50_us"]' <<<"$b")") b99+=("$(json 'd["p99_us"]' <<<"$b")") b999+=("$(json 'd["p999_us"]' <<<"$b")")
    start "${ep[@]}" "$sonde" echo --bind "$P:17102" -q $pflag
    s=$("${pp[@]}" "$sonde" ping "$P:17102" --inflight 1 --duration "${secs}s" --size "$size" --timestamps user --json $pflag)
    stop_all
    s50+=("$(json 'd["rtt"]["p50_us"]' <<<"$s")") s99+=("$(json 'd["rtt"]["p99_us"]' <<<"$s")") s999+=("$(json 'd["rtt"]["p999_us"]' <<<"$s")")
    # The same pair timed by the kernel at both ends of the pinger (its default).
    start "${ep[@]}" "$sonde" echo --bind "$P:17105" -q $pflag
    s=$("${pp[@]}" "$sonde" ping "$P:17105" --inflight 1 --duration "${secs}s" --size "$size" --timestamps kernel --json $pflag)
    stop_all
    k50+=("$(json 'd["rtt"]["p50_us"]' <<<"$s")") k99+=("$(json 'd["rtt"]["p99_us"]' <<<"$s")") k999+=("$(json 'd["rtt"]["p999_us"]' <<<"$s")")
    if have sockperf; then
      start "${ep[@]}" sockperf server -i "$P" -p 17103 "${nb[@]}"
      out=$("${pp[@]}" sockperf ping-pong -i "$P" -p 17103 -m "$size" -t "$secs" --full-rtt "${nb[@]}" 2>&1)
      stop_all
      p50+=("$(sockperf_pct 50.000 <<<"$out")") p99+=("$(sockperf_pct 99.000 <<<"$out")") p999+=("$(sockperf_pct 99.900 <<<"$out")")
    fi
  done
  local sm bm pm
  sm=$(median "${s50[@]}") bm=$(median "${b50[@]}")
  row "$label" "sonde pair" "p50 $sm / p99 $(median "${s99[@]}") / p99.9 $(median "${s999[@]}") µs" "-"
  row "$label" "bare pair (limit)" "p50 $bm / p99 $(median "${b99[@]}") / p99.9 $(median "${b999[@]}") µs" "sonde/limit p50 $(ratio "$sm" "$bm")"
  local km
  km=$(median "${k50[@]}")
  row "$label" "sonde pair, kernel times both ends" "p50 $km / p99 $(median "${k99[@]}") / p99.9 $(median "${k999[@]}") µs" "this/limit p50 $(ratio "$km" "$bm")"
  if have sockperf; then
    pm=$(median "${p50[@]}")
    row "$label" "sockperf pair" "p50 $pm / p99 $(median "${p99[@]}") / p99.9 $(median "${p999[@]}") µs" "sonde/sockperf p50 $(ratio "$sm" "$pm")"
  else
    row "$label" "sockperf pair" "not installed" "-"
  fi
}

pipelined() {
  local label="pipelined, 64 in flight" r b=() s=() ng=() py=() pp=() sp=() out
  start "$bare" echo 17201
  start "$sonde" echo --bind "$P:17202" -q
  start python3 "$here/scripts/py-echo.py" "$P" 17203
  have sockperf && start sockperf server -i "$P" -p 17204
  rtps() { "$sonde" ping "$P:$1" --inflight 64 --duration "${secs}s" --size "$size" --json "${@:2}" | json 'round(d["received"] / d["duration_s"])'; }
  for ((r = 0; r < repeat; r++)); do
    b+=("$("$bare" ping "$P:17201" "$secs" 64 "$size" | json 'd["round_trips_per_s"]')")
    s+=("$(rtps 17202)")
    ng+=("$(rtps 17202 --gso off)")
    py+=("$(rtps 17203)")
    pp+=("$(python3 "$here/scripts/py-ping.py" "$P" 17203 "$secs" 64 "$size" | json 'd["round_trips_per_s"]')")
    if have sockperf; then
      out=$(sockperf ping-pong -i "$P" -p 17204 -m "$size" -t "$secs" -b 64 2>&1)
      sp+=("$(sed -n 's/.*\[Valid Duration\] RunTime=\([0-9.]*\) sec.*ReceivedMessages=\([0-9]*\).*/\2 \1/p' <<<"$out" |
        awk '{ printf "%d", $1 / $2 }')")
    fi
  done
  stop_all
  local srate nrate brate prate pprate rate
  srate=$(median "${s[@]}") nrate=$(median "${ng[@]}") brate=$(median "${b[@]}")
  prate=$(median "${py[@]}") pprate=$(median "${pp[@]}")
  row "$label" "sonde pair" "$srate round trips/s ($(spread "${s[@]}"))" "-"
  row "$label" "sonde pair, --gso off" "$nrate round trips/s ($(spread "${ng[@]}"))" "with/without GSO $(ratio "$srate" "$nrate")"
  row "$label" "bare mmsg pair (limit)" "$brate round trips/s ($(spread "${b[@]}"))" "sonde/limit $(ratio "$srate" "$brate"); --gso off $(ratio "$nrate" "$brate")"
  row "$label" "stdlib Python pair" "$pprate round trips/s ($(spread "${pp[@]}"))" "sonde/python $(ratio "$srate" "$pprate")"
  row "$label" "stdlib Python echo, sonde client" "$prate round trips/s ($(spread "${py[@]}"))" "sonde pair/this $(ratio "$srate" "$prate")"
  if have sockperf; then
    rate=$(median "${sp[@]}")
    row "$label" "sockperf ping-pong -b 64 pair" "$rate round trips/s ($(spread "${sp[@]}"))" "sonde/sockperf $(ratio "$srate" "$rate"); --gso off $(ratio "$nrate" "$rate")"
  fi
}

capacity() {
  local label="echo capacity, same client" r
  local client=(--wire sockperf --flows 2 --inflight 64 --duration "${secs}s" --size "$size" --json)
  local base=() one=() two=() base1=() one1=()
  have sockperf && start sockperf server -i "$P" -p 17301
  start "$sonde" echo --bind "$P:17311" --wire sockperf --threads 1 -q
  start "$sonde" echo --bind "$P:17312" --wire sockperf --threads 2 -q
  serve() { "$sonde" ping "$P:$1" "${client[@]}" "${@:2}" | json 'round(d["received"] / d["duration_s"])'; }
  for ((r = 0; r < repeat; r++)); do
    have sockperf && base+=("$(serve 17301)") base1+=("$(serve 17301 --gso off)")
    one+=("$(serve 17311)")
    one1+=("$(serve 17311 --gso off)")
    two+=("$(serve 17312)")
  done
  stop_all
  local sockperf_rate="" sockperf_one="" m1 m2 n1
  if have sockperf; then
    sockperf_rate=$(median "${base[@]}") sockperf_one=$(median "${base1[@]}")
    row "$label" "sockperf server" "$sockperf_rate datagrams/s ($(spread "${base[@]}"))" "-"
  fi
  m1=$(median "${one[@]}") m2=$(median "${two[@]}") n1=$(median "${one1[@]}")
  row "$label" "sonde echo --threads 1" "$m1 datagrams/s ($(spread "${one[@]}"))" "${sockperf_rate:+sonde/sockperf $(ratio "$m1" "$sockperf_rate")}"
  row "$label" "sonde echo --threads 2" "$m2 datagrams/s ($(spread "${two[@]}"))" "${sockperf_rate:+sonde/sockperf $(ratio "$m2" "$sockperf_rate")}"
  local label1="echo capacity, client --gso off"
  if have sockperf; then
    row "$label1" "sockperf server" "$sockperf_one datagrams/s ($(spread "${base1[@]}"))" "-"
  fi
  row "$label1" "sonde echo --threads 1" "$n1 datagrams/s ($(spread "${one1[@]}"))" "${sockperf_one:+sonde/sockperf $(ratio "$n1" "$sockperf_one")}"
}

# One open-loop trial per tool at rate $1: clean when under 0.1% of the probes go unanswered
# (every reply counted) and at least 99% of what the rate asks for was sent.
sonde_clean() {
  local want=$(($1 * secs * 99 / 100))
  "$sonde" ping "$P:17401" --rate "$1" --duration "${secs}s" --size "$size" --json |
    json 'int(d["sent"] >= '"$want"' and d["loss_pct"] < 0.1)' | grep -qx 1
}

sockperf_clean() { # its counts cover its "valid duration" (warm-up excluded): RunTime seconds
  local out run sent recv
  out=$(sockperf under-load -i "$P" -p 17402 -m "$size" -t "$secs" --mps="$1" --reply-every 1 2>&1)
  run=$(sed -n 's/.*\[Valid Duration\] RunTime=\([0-9.]*\) sec.*/\1/p' <<<"$out")
  sent=$(sed -n 's/.*\[Valid Duration\].*SentMessages=\([0-9]*\).*/\1/p' <<<"$out")
  recv=$(sed -n 's/.*\[Valid Duration\].*ReceivedMessages=\([0-9]*\).*/\1/p' <<<"$out")
  [[ -n "$run" && -n "$sent" && -n "$recv" ]] &&
    python3 -c 'import sys; rate, run = map(float, sys.argv[1:3]); s, r = map(int, sys.argv[3:]); sys.exit(0 if s >= 0.99 * rate * run and (s - r) / s < 0.001 else 1)' \
      "$1" "$run" "$sent" "$recv"
}

# The highest clean rate, searched the same way for every tool: double from 1 000/s until a
# trial loses, then bisect that bracket (4 times: to 1/16 of it; --quick: twice). One trial per
# rate, so the figure is as noisy as one run.
search_rate() {
  local trial=$1 lo=0 hi=1000 max=1024000 mid i steps=4
  ((quick)) && steps=2
  while ((hi <= max)) && "$trial" "$hi"; do
    lo=$hi
    hi=$((hi * 2))
  done
  if ((hi <= max)); then
    for ((i = 0; i < steps; i++)); do
      mid=$(((lo + hi) / 2))
      if "$trial" "$mid"; then lo=$mid; else hi=$mid; fi
    done
  fi
  echo "$lo"
}

highest_rate() {
  local best_s best_p
  start "$sonde" echo --bind "$P:17401" -q
  best_s=$(search_rate sonde_clean)
  stop_all
  row "highest rate, < 0.1% loss" "sonde pair" "$best_s probes/s" "-"
  if have sockperf; then
    start sockperf server -i "$P" -p 17402
    best_p=$(search_rate sockperf_clean)
    stop_all
    row "highest rate, < 0.1% loss" "sockperf under-load pair" "$best_p msg/s" "sonde/sockperf $(ratio "$best_s" "$best_p")"
  fi
}

# Instructions per round trip of each client with 64 in flight: callgrind counts them exactly,
# whatever else the machine does. sonde's client against the bare echo, sockperf's against its
# own server.
cpu_per_round_trip() {
  local label="instructions per round trip, 64 in flight"
  if ! have valgrind; then
    rows+=("| $label | - | valgrind not installed: skipped | - |")
    return
  fi
  local n=50000 out ir per_s per_p recv
  start "$bare" echo 17403
  out=$(valgrind --tool=callgrind --callgrind-out-file=/dev/null \
    "$sonde" ping "$P:17403" --inflight 64 --count "$n" --size "$size" -q 2>&1)
  stop_all
  ir=$(collected <<<"$out")
  per_s=$(python3 -c 'import sys; print(round(int(sys.argv[1]) / int(sys.argv[2])))' "${ir:-0}" "$n")
  row "$label" "sonde ping client" "$per_s instructions ($ir for $n)" "-"
  if have sockperf; then
    start sockperf server -i "$P" -p 17404
    out=$(valgrind --tool=callgrind --callgrind-out-file=/dev/null \
      sockperf ping-pong -i "$P" -p 17404 -m "$size" -t 2 -b 64 2>&1)
    stop_all
    ir=$(collected <<<"$out")
    recv=$(sed -n 's/.*\[Valid Duration\].*ReceivedMessages=\([0-9]*\).*/\1/p' <<<"$out")
    per_p=$(python3 -c 'import sys; a, b = map(int, sys.argv[1:]); print(round(a / b) if b else 0)' "${ir:-0}" "${recv:-0}")
    row "$label" "sockperf ping-pong -b 64 client" "$per_p instructions ($ir for ${recv:-?})" "sonde/sockperf $(ratio "$per_s" "$per_p")"
  fi
}

# irtt (Go; its own client and server, the server's minimum interval lifted) expresses two of
# the tests: RTT at a fixed rate of 1 000/s (its -i 1ms; the closest to a ping-pong it has), and
# the highest clean rate.
irtt_trial() { # rate; prints irtt's JSON (its -o - stays silent with -Q: a file it is)
  local interval_ns out
  interval_ns=$(python3 -c 'import sys; print(max(1, round(1e9 / float(sys.argv[1]))))' "$1")
  out=$(mktemp --suffix=.json)
  irtt client -i "${interval_ns}ns" -d "${secs}s" -l "$size" -Q -o "$out" "$P:17601"
  cat "$out"
  rm -f "$out"
}

# Clean: under 0.1% lost, and at least 99% of the packets the rate asks for actually sent (irtt
# falls behind its schedule silently at high rates).
irtt_clean() {
  local want=$(($1 * secs * 99 / 100))
  irtt_trial "$1" |
    json 'int(d["stats"]["packets_sent"] >= '"$want"' and d["stats"]["upstream_loss_percent"] + d["stats"]["downstream_loss_percent"] < 0.1)' |
    grep -qx 1
}

irtt_rows() {
  if ! have irtt; then
    rows+=("| irtt | - | not installed: skipped | - |")
    return
  fi
  local label="RTT at 1 000/s (irtt's test)" r i=() s=() out
  start irtt server -b "$P:17601" -i 0 -d 0
  start "$sonde" echo --bind "$P:17602" -q
  for ((r = 0; r < repeat; r++)); do
    out=$(irtt_trial 1000)
    i+=("$(json 'd["stats"]["rtt"]["median"] / 1000' <<<"$out")")
    s+=("$("$sonde" ping "$P:17602" --rate 1000 --duration "${secs}s" --size "$size" --timestamps user --json | json 'd["rtt"]["p50_us"]')")
  done
  local sm im best_i best_s
  sm=$(median "${s[@]}") im=$(median "${i[@]}")
  row "$label" "sonde pair" "p50 $sm µs" "-"
  row "$label" "irtt pair" "p50 $im µs" "sonde/irtt $(ratio "$sm" "$im")"
  best_i=$(search_rate irtt_clean)
  stop_all
  start "$sonde" echo --bind "$P:17401" -q
  best_s=$(search_rate sonde_clean)
  stop_all
  row "highest rate, < 0.1% loss (irtt's test)" "sonde pair" "$best_s probes/s" "-"
  row "highest rate, < 0.1% loss (irtt's test)" "irtt pair" "$best_i packets/s" "sonde/irtt $(ratio "$best_s" "$best_i")"
}

# The same at one in flight, where a latency test spends its time: each client against the bare
# echo (one datagram a call), by the difference between two run lengths (start-up cancels out)
# divided by the difference in round trips.
cpu_one_in_flight() {
  local label="instructions per round trip, one in flight"
  if ! have valgrind; then
    rows+=("| $label | - | valgrind not installed: skipped | - |")
    return
  fi
  local vg=(valgrind --tool=callgrind --callgrind-out-file=/dev/null) out ir=() n=() t
  per() { python3 -c 'import sys; a, b, c, d = map(int, sys.argv[1:]); print(round((b - a) / (d - c)) if d > c else 0)' "$@"; }
  start "$bare" echo 17405 single
  for t in 2000 12000; do
    out=$("${vg[@]}" "$sonde" ping "$P:17405" --inflight 1 --count "$t" --size "$size" --timestamps user -q 2>&1)
    ir+=("$(collected <<<"$out")") n+=("$t")
  done
  local by_sonde
  by_sonde=$(per "${ir[@]}" "${n[@]}")
  row "$label" "sonde ping client" "$by_sonde instructions" "-"
  ir=() n=()
  for t in 1 3; do
    out=$("${vg[@]}" "$bare" ping "$P:17405" "$t" 1 "$size" 2>&1)
    ir+=("$(collected <<<"$out")")
    n+=("$(grep '^{' <<<"$out" | json "round(d['round_trips_per_s'] * $t)")")
  done
  local by_bare
  by_bare=$(per "${ir[@]}" "${n[@]}")
  row "$label" "bare client (limit)" "$by_bare instructions" "sonde/limit $(ratio "$by_sonde" "$by_bare")"
  stop_all
  if have sockperf; then
    start sockperf server -i "$P" -p 17406
    ir=() n=()
    for t in 1 3; do
      out=$("${vg[@]}" sockperf ping-pong -i "$P" -p 17406 -m "$size" -t "$t" 2>&1)
      ir+=("$(collected <<<"$out")")
      n+=("$(sed -n 's/.*\[Valid Duration\].*ReceivedMessages=\([0-9]*\).*/\1/p' <<<"$out")")
    done
    stop_all
    local by_sockperf
    by_sockperf=$(per "${ir[@]}" "${n[@]}")
    row "$label" "sockperf ping-pong client" "$by_sockperf instructions" "sonde/sockperf $(ratio "$by_sonde" "$by_sockperf")"
  fi
}

# Instructions per datagram served, counted by callgrind, so the servers can be compared
# without the shared client in the way: the difference between serving 60 000 and 10 000
# datagrams (start-up cancels out), divided by 50 000; with 64 in flight ("$1" 64) or one.
server_cpu() {
  local window=$1 label="server instructions per datagram, $1 in flight" log
  ((window == 1)) && label="server instructions per datagram, one in flight"
  if ! have valgrind; then
    rows+=("| $label | - | valgrind not installed: skipped | - |")
    return
  fi
  log=$(mktemp)
  served() { # wire the client speaks, port, then the server's command line
    local wire=$1 port=$2 n ir=()
    shift 2
    for n in 10000 60000; do
      valgrind --tool=callgrind --callgrind-out-file=/dev/null "$@" >/dev/null 2>"$log" &
      local pid=$!
      sleep 2
      timeout 300 "$sonde" ping "$P:$port" --wire "$wire" --inflight "$window" --count "$n" --size "$size" -q >/dev/null
      # SIGINT ends sockperf and sonde with their reports; the bare echo has no handler, and a
      # background job ignores SIGINT: SIGTERM, which callgrind still reports on.
      kill -INT "$pid"
      sleep 1
      kill -TERM "$pid" 2>/dev/null || true
      wait "$pid" || true
      ir+=("$(collected <"$log")")
    done
    python3 -c 'import sys; a, b = map(int, sys.argv[1:]); print(round((b - a) / 50000))' "${ir[0]:-0}" "${ir[1]:-0}"
  }
  local by_sockperf=""
  if have sockperf; then
    by_sockperf=$(served sockperf 17501 sockperf server -i "$P" -p 17501)
    row "$label" "sockperf server" "$by_sockperf instructions" "-"
  fi
  local by_sonde
  by_sonde=$(served sockperf 17502 "$sonde" echo --bind "$P:17502" --wire sockperf -q)
  row "$label" "sonde echo" "$by_sonde instructions" "${by_sockperf:+sonde/sockperf $(ratio "$by_sonde" "$by_sockperf")}"
  if ((window == 1)); then
    # The bare echo sends back what came: sonde's own wire, for it and for sonde's echo.
    local by_bare plain
    plain=$(served sonde 17504 "$sonde" echo --bind "$P:17504" -q)
    row "$label" "sonde echo, sonde wire" "$plain instructions" "-"
    by_bare=$(served sonde 17503 "$bare" echo 17503 single)
    row "$label" "bare echo, one datagram a call (limit)" "$by_bare instructions" "sonde/limit $(ratio "$plain" "$by_bare")"
  fi
  rm -f "$log"
}

# STAMP (RFC 8762): the sonde pair's highest clean rate beside stamp-suite's own pair (searched
# the same way), and the STAMP reflector's capacity beside the plain echo's with one client.
sonde_stamp_clean() {
  local want=$(($1 * secs * 99 / 100))
  "$sonde" ping "$P:17601" --wire stamp --rate "$1" --duration "${secs}s" --size "$size" --json |
    json 'int(d["sent"] >= '"$want"' and d["loss_pct"] < 0.1)' | grep -qx 1
}

suite_stamp_clean() { # its JSON summary: packets_sent, packets_lost
  local count=$(($1 * secs)) gap
  gap=$(python3 -c 'import sys; print("%dus" % max(1, round(1e6 / float(sys.argv[1]))))' "$1")
  stamp-suite -r "$P" -p 17602 -c "$count" -d "$gap" -L 1 --duration $((secs + 5)) --output-format json 2>/dev/null |
    grep '"summary"' | tail -n 1 |
    json 'int(d["packets_sent"] >= 0.99 * '"$count"' and d["packets_lost"] < 0.001 * d["packets_sent"])' | grep -qx 1
}

stamp_rows() {
  local best_s best_p label="STAMP: highest rate, < 0.1% loss" plain=() stamp=()
  start "$sonde" echo --bind "$P:17601" --wire stamp --stateful -q
  best_s=$(search_rate sonde_stamp_clean)
  stop_all
  row "$label" "sonde pair (--stateful reflector)" "$best_s probes/s" "-"
  if have stamp-suite; then
    start stamp-suite -i -S "$P" -o 17602 --stateful-reflector
    best_p=$(search_rate suite_stamp_clean)
    stop_all
    row "$label" "stamp-suite pair (stateful)" "$best_p probes/s" "sonde/stamp-suite $(ratio "$best_s" "$best_p")"
  else
    row "$label" "stamp-suite pair" "not installed" "-"
  fi
  # Reflector capacity, paired: the plain echo and the STAMP reflector share one core (the
  # scheduler splits it evenly), each flooded from the other core by its own client that never
  # reads (bare blast: all-zero 64-byte datagrams, a valid STAMP test packet), so neither pays
  # for the other's replies and the host's noise hits both alike. Answers per second of each,
  # and their ratio, which is the ratio of their costs per datagram.
  paired() { # blast flags: "" (GSO runs of 64, as sonde sends toward loopback) or nogso
    local a b pa pb ca cb
    a=$(mktemp) b=$(mktemp)
    taskset -c 1 "$sonde" echo --bind "$P:17611" --json >"$a" 2>/dev/null & pa=$!
    taskset -c 1 "$sonde" echo --bind "$P:17612" --wire stamp --stateful --json >"$b" 2>/dev/null & pb=$!
    sleep 0.3
    taskset -c 0 "$bare" blast "$P:17611" "$secs" "$size" ${1:+"$1"} >/dev/null & ca=$!
    taskset -c 0 "$bare" blast "$P:17612" "$secs" "$size" ${1:+"$1"} >/dev/null & cb=$!
    wait "$ca" "$cb"
    kill -INT "$pa" "$pb"
    wait "$pa" "$pb" || true
    python3 -c 'import json,sys; print(*(round(json.load(open(f))["bytes_out"] / int(sys.argv[3]) / float(sys.argv[4])) for f in sys.argv[1:3]))' "$a" "$b" "$size" "$secs"
    rm -f "$a" "$b"
  }
  local mode out
  for mode in "" nogso; do
    plain=() stamp=()
    for ((r = 0; r < repeat; r++)); do
      out=$(paired "$mode")
      plain+=("${out% *}") stamp+=("${out#* }")
    done
    local mp ms
    mp=$(median "${plain[@]}") ms=$(median "${stamp[@]}")
    label="STAMP reflector capacity, paired on one core (client: ${mode:-gso} blast)"
    row "$label" "sonde echo (plain)" "$mp datagrams/s ($(spread "${plain[@]}"))" "-"
    row "$label" "sonde echo --wire stamp --stateful" "$ms datagrams/s ($(spread "${stamp[@]}"))" "stamp/plain $(ratio "$ms" "$mp")"
  done
}

echo "bench-peers: ${secs}s runs, $repeat rounds, ${size}-byte messages, loopback; $(nproc) CPUs; $(uname -r)" >&2
want() { [[ -z "$only" || ",$only," == *",$1,"* ]]; }
if want pingpong; then
  pingpong "ping-pong, blocking" 0
  if have taskset && (($(nproc) >= 2)); then
    pingpong "ping-pong, blocking, pinned on two CPUs (echo 1, pinger 0)" 0 1 0
    pingpong "ping-pong, blocking, pinned on one CPU (both on 0)" 0 0 0
  else
    row "ping-pong, blocking, pinned" "-" "needs taskset and two CPUs" "-"
  fi
  pingpong "ping-pong, busy-poll" 1
fi
if want pipelined; then pipelined; fi
if want capacity; then capacity; fi
if want rate; then highest_rate; fi
if want cpu; then cpu_per_round_trip; server_cpu 64; cpu_one_in_flight; server_cpu 1; fi
if want stamp; then stamp_rows; fi
if want irtt; then irtt_rows; fi
# iperf measures one-way throughput and loss, not round trips: it has no test of the same thing.
rows+=("| iperf, iperf3 | - | one-way throughput, no round trips: no comparable test | - |")
echo "| test | tool | result | ratio |"
echo "|---|---|---|---|"
printf '%s\n' "${rows[@]}"
