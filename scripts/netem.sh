#!/usr/bin/env bash
# netem.sh: impair a link on purpose, for sonde's loss and latency experiments (Linux, root).
#
# Kernels without sch_netem exist (tc: "Specified qdisc kind is unknown"). This script detects
# that up front, says so in one line, and uses what the kernel has instead: nftables random drop
# for loss, tbf for rate, and `sonde impair` (a userspace netem) for delay, jitter, reordering,
# duplication and Gilbert-Elliott loss. It never half-applies a setting: what cannot be applied
# is refused before anything changes, and a failure midway is rolled back.
set -Eeuo pipefail
# shellcheck source=lib.sh source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

readonly LAB="${SONDE_LAB:-sonde-lab}"
readonly NS_A="${LAB}-a" NS_B="${LAB}-b"
# Interface names hold 15 bytes; the devices live in the lab namespaces, so a shared prefix is fine.
readonly DEV_A="${LAB:0:12}-a" DEV_B="${LAB:0:12}-b"
# RFC 2544's benchmarking range: never 10/8, 172.16/12 or 192.168/16.
readonly ADDR_A=198.18.0.1 ADDR_B=198.18.0.2 PREFIX=24
readonly ECHO_PORT=9999 RELAY_PORT=9998
readonly STATE="/run/${LAB}"
readonly NFT_TABLE=sonde_netem

usage() {
  cat <<'EOF'
usage: scripts/netem.sh COMMAND [options]

Commands:
  lab up|down|status      a private test link: namespaces LAB-a (198.18.0.1) and LAB-b
                          (198.18.0.2) joined by a veth pair. `down` removes everything `up`
                          made and is safe to run twice. LAB is $SONDE_LAB (default sonde-lab).
  apply TARGET IMPAIRMENTS [--dry-run]
                          impair the egress of a device, or of the lab link
  clear TARGET [--dry-run]
                          remove everything apply added there
  show TARGET             what is applied now
  sweep [options]         the loss experiment: sweep loss and payload, write CSV and SVG

TARGET:
  --dev DEV               a device of this host (its egress)
  --lab                   both directions of the lab link
  --lab-one-way           only LAB-a -> LAB-b (so round-trip loss equals the configured loss)

IMPAIRMENTS (netem's meanings):
  --loss P%               random loss
  --loss-model gemodel:p,r,1-h,1-k
                          Gilbert-Elliott bursty loss, percentages
  --delay D --jitter J    delay with jitter (D, J like 10ms, 500us)
  --reorder P%            share sent without the delay (needs --delay)
  --duplicate P%          share sent twice
  --rate R                link rate (tc units: 800kbit, 10mbit)

sweep options:
  --losses "0 1 2 5 10 20"   loss values, percent
  --sizes "64 512 1400"      payload sizes, bytes
  --rate PPS                 sonde ping's fixed rate (default 2000)
  --count N                  probes per cell (default 4000)
  --via auto|netem|nft|impair
                             how loss is applied (default auto: netem, else nft in the lab;
                             impair needs no root and runs on loopback)
  --out DIR                  where loss-sweep.csv and loss-sweep.svg go (default sweep-out)
  --sonde PATH               the sonde binary (default $SONDE, target/release/sonde, or PATH)

Every command it runs is printed first, prefixed with '+'.
EOF
}

die() {
  echo "netem.sh: $*" >&2
  exit 1
}

dry_run=0
# Prints a command, then runs it (unless --dry-run).
run() {
  echo "+ $*" >&2
  if ((!dry_run)); then "$@"; fi
}

need_root() {
  ((EUID == 0)) || die "$1 needs root (network namespaces, tc, nft)"
}

# --- netem detection -----------------------------------------------------------------------

NETEM_REASON=""
# Sets NETEM_REASON and returns 0 when the kernel has sch_netem; tries it in a throwaway
# namespace so nothing real is touched.
have_netem() {
  if [[ -n "$NETEM_REASON" ]]; then
    [[ "$NETEM_REASON" == available ]]
    return
  fi
  if ! command -v tc >/dev/null; then
    NETEM_REASON="tc is not installed"
    return 1
  fi
  local probe="${LAB}-probe-$$" err
  ip netns add "$probe" 2>/dev/null || {
    NETEM_REASON="cannot create a namespace to test it"
    return 1
  }
  if err=$(ip netns exec "$probe" tc qdisc add dev lo root netem delay 1ms 2>&1); then
    NETEM_REASON=available
  else
    NETEM_REASON="${err:-tc failed}"
  fi
  ip netns del "$probe"
  [[ "$NETEM_REASON" == available ]]
}

# --- the lab -------------------------------------------------------------------------------

lab_up() {
  need_root "lab up"
  if ns_exists "$NS_A" && ns_exists "$NS_B"; then
    echo "lab $LAB is already up: $NS_A $ADDR_A <-> $NS_B $ADDR_B"
    return
  fi
  lab_down quiet
  run ip netns add "$NS_A"
  run ip netns add "$NS_B"
  run ip link add "$DEV_A" netns "$NS_A" type veth peer name "$DEV_B" netns "$NS_B"
  run ip -n "$NS_A" addr add "$ADDR_A/$PREFIX" dev "$DEV_A"
  run ip -n "$NS_B" addr add "$ADDR_B/$PREFIX" dev "$DEV_B"
  for ns in "$NS_A" "$NS_B"; do
    run ip -n "$ns" link set lo up
  done
  run ip -n "$NS_A" link set "$DEV_A" up
  run ip -n "$NS_B" link set "$DEV_B" up
  # Permanent neighbour entries: no ARP on the lab link, so impairments act on datagrams only
  # (netem drops ARP too, and a lost ARP request stalls traffic for a retransmit interval).
  local mac_a mac_b
  mac_a=$(ip -n "$NS_A" -o link show "$DEV_A" | sed -n 's/.*link\/ether \([0-9a-f:]*\).*/\1/p')
  mac_b=$(ip -n "$NS_B" -o link show "$DEV_B" | sed -n 's/.*link\/ether \([0-9a-f:]*\).*/\1/p')
  if ((!dry_run)); then
    [[ -n "$mac_a" && -n "$mac_b" ]] || die "could not read the veth addresses"
  fi
  run ip -n "$NS_A" neigh replace "$ADDR_B" lladdr "${mac_b:-MAC_B}" dev "$DEV_A" nud permanent
  run ip -n "$NS_B" neigh replace "$ADDR_A" lladdr "${mac_a:-MAC_A}" dev "$DEV_B" nud permanent
  echo "lab $LAB up: $NS_A ($ADDR_A, $DEV_A) <-> $NS_B ($ADDR_B, $DEV_B)"
}

lab_down() {
  need_root "lab down"
  stop_relay
  local ns
  for ns in "$NS_A" "$NS_B"; do
    # Deleting a namespace deletes its end of the veth, its qdiscs and its nft tables.
    if ns_exists "$ns"; then run ip netns del "$ns"; fi
  done
  rm -rf "$STATE"
  [[ "${1:-}" == quiet ]] || echo "lab $LAB is down"
}

lab_status() {
  if ns_exists "$NS_A" && ns_exists "$NS_B"; then
    echo "lab $LAB up: $NS_A ($ADDR_A) <-> $NS_B ($ADDR_B)"
  else
    echo "lab $LAB is down"
  fi
}

# --- impairments ---------------------------------------------------------------------------

loss="" loss_model="" delay="" jitter="" reorder="" duplicate="" rate=""
target="" dev=""

parse_target_and_impairments() {
  while (($#)); do
    case "$1" in
    --dev) dev="${2:?--dev needs a device}" target=dev; shift 2 ;;
    --lab) target=lab; shift ;;
    --lab-one-way) target=lab-one-way; shift ;;
    --loss) loss="${2:?--loss needs a percentage}"; shift 2 ;;
    --loss-model) loss_model="${2:?--loss-model needs gemodel:p,r,1-h,1-k}"; shift 2 ;;
    --delay) delay="${2:?--delay needs a duration}"; shift 2 ;;
    --jitter) jitter="${2:?--jitter needs a duration}"; shift 2 ;;
    --reorder) reorder="${2:?--reorder needs a percentage}"; shift 2 ;;
    --duplicate) duplicate="${2:?--duplicate needs a percentage}"; shift 2 ;;
    --rate) rate="${2:?--rate needs a rate}"; shift 2 ;;
    --dry-run) dry_run=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) echo "netem.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
  done
  [[ -n "$target" ]] || { echo "netem.sh: say where: --dev DEV, --lab or --lab-one-way" >&2; exit 2; }
  local p
  for p in "$loss" "$reorder" "$duplicate"; do
    [[ -z "$p" || "$p" =~ ^[0-9]+(\.[0-9]+)?%?$ ]] || { echo "netem.sh: not a percentage: $p" >&2; exit 2; }
  done
  [[ -z "$loss" || -z "$loss_model" ]] || { echo "netem.sh: --loss and --loss-model exclude each other" >&2; exit 2; }
  [[ -z "$loss_model" || "$loss_model" =~ ^gemodel:[0-9.,]+$ ]] || { echo "netem.sh: --loss-model takes gemodel:p,r,1-h,1-k" >&2; exit 2; }
  [[ -z "$reorder" || -n "$delay" ]] || { echo "netem.sh: --reorder needs --delay" >&2; exit 2; }
  [[ -z "$jitter" || -n "$delay" ]] || { echo "netem.sh: --jitter needs --delay" >&2; exit 2; }
}

pct() { echo "${1%\%}"; }

# Egress points of the target: "NAMESPACE DEVICE" per line ("-" for the host namespace).
egress_points() {
  case "$target" in
  dev) echo "- $dev" ;;
  lab) printf '%s %s\n%s %s\n' "$NS_A" "$DEV_A" "$NS_B" "$DEV_B" ;;
  lab-one-way) echo "$NS_A $DEV_A" ;;
  esac
}

# Runs a command in namespace $1 ("-" = host).
in_ns() {
  local ns="$1"
  shift
  if [[ "$ns" == - ]]; then run "$@"; else run ip netns exec "$ns" "$@"; fi
}

netem_args() {
  local args=()
  [[ -z "$delay" ]] || args+=(delay "$delay" ${jitter:+"$jitter"})
  [[ -z "$loss" ]] || args+=(loss "$(pct "$loss")%")
  if [[ -n "$loss_model" ]]; then
    local params
    IFS=, read -r -a params <<<"${loss_model#gemodel:}"
    args+=(loss gemodel)
    local v
    for v in "${params[@]}"; do args+=("$v%"); done
  fi
  [[ -z "$reorder" ]] || args+=(reorder "$(pct "$reorder")%")
  [[ -z "$duplicate" ]] || args+=(duplicate "$(pct "$duplicate")%")
  [[ -z "$rate" ]] || args+=(rate "$rate")
  echo "${args[@]}"
}

# Where nftables drops for each egress point: the ingress of the device at the other end.
# A drop on the sender's own output path (postrouting, or the netdev egress hook) is refused to
# the sending socket with EPERM, which a pinger rightly counts as "not sent", not as loss.
ingress_points() {
  case "$target" in
  dev) echo "- $dev" ;;
  lab) printf '%s %s\n%s %s\n' "$NS_B" "$DEV_B" "$NS_A" "$DEV_A" ;;
  lab-one-way) echo "$NS_B $DEV_B" ;;
  esac
}

# nft rule dropping P percent of what arrives on DEV (numgen is uniform over 0..999999).
nft_loss() {
  local ns="$1" device="$2" p threshold
  p=$(pct "$loss")
  threshold=$(awk -v p="$p" 'BEGIN { printf "%d", p * 10000 }')
  in_ns "$ns" nft add table netdev "$NFT_TABLE"
  in_ns "$ns" nft add chain netdev "$NFT_TABLE" loss "{ type filter hook ingress device \"$device\" priority 0; policy accept; }"
  # Datagrams only: dropping ARP too would stall the link for a retransmit interval.
  in_ns "$ns" nft add rule netdev "$NFT_TABLE" loss meta protocol '{ ip, ip6 }' numgen random mod 1000000 '<' "$threshold" counter drop
}

readonly IFB=sonde-ifb
# A rate limit at the ingress of DEV: its traffic is redirected to an IFB device whose egress
# has the tbf. Like loss, a full bottleneck then drops where the sender cannot see it; tbf on
# the sender's own egress makes its kernel refuse sends (ENOBUFS) instead.
tbf_ingress() {
  local ns="$1" device="$2"
  in_ns "$ns" ip link add "$IFB" type ifb
  in_ns "$ns" ip link set "$IFB" up
  in_ns "$ns" tc qdisc add dev "$device" handle ffff: ingress
  in_ns "$ns" tc filter add dev "$device" parent ffff: protocol all u32 match u32 0 0 \
    action mirred egress redirect dev "$IFB"
  in_ns "$ns" tc qdisc add dev "$IFB" root tbf rate "$rate" burst 32kbit latency 400ms
}

# Starts sonde impair in the lab's b namespace, between RELAY_PORT and the echo at ECHO_PORT.
start_relay() {
  local direction="$1" args=()
  [[ -z "$loss" ]] || args+=(--loss "$loss")
  [[ -z "$loss_model" ]] || args+=(--loss-model "$loss_model")
  [[ -z "$delay" ]] || args+=(--delay "$delay")
  [[ -z "$jitter" ]] || args+=(--jitter "$jitter")
  [[ -z "$reorder" ]] || args+=(--reorder "$reorder")
  [[ -z "$duplicate" ]] || args+=(--duplicate "$duplicate")
  local sonde
  sonde=$(sonde_bin)
  echo "+ ip netns exec $NS_B $sonde impair --listen $ADDR_B:$RELAY_PORT --forward $ADDR_B:$ECHO_PORT --direction $direction ${args[*]} &" >&2
  ((dry_run)) && return
  mkdir -p "$STATE"
  ip netns exec "$NS_B" "$sonde" impair --listen "$ADDR_B:$RELAY_PORT" --forward "$ADDR_B:$ECHO_PORT" \
    --direction "$direction" "${args[@]}" -q >"$STATE/impair.log" 2>&1 &
  echo $! >"$STATE/impair.pid"
  sleep 0.2
  kill -0 "$(cat "$STATE/impair.pid")" 2>/dev/null || die "sonde impair did not start: $(cat "$STATE/impair.log")"
}

stop_relay() {
  [[ -f "$STATE/impair.pid" ]] || return 0
  local pid
  pid=$(cat "$STATE/impair.pid")
  if kill -0 "$pid" 2>/dev/null; then run kill -INT "$pid"; fi
  rm -f "$STATE/impair.pid"
}

apply() {
  parse_target_and_impairments "$@"
  need_root apply
  if [[ "$target" != dev ]] && ! { ns_exists "$NS_A" && ns_exists "$NS_B"; }; then
    die "lab $LAB is down: run scripts/netem.sh lab up first"
  fi
  if [[ "$target" == dev ]] && ! ip link show "$dev" >/dev/null 2>&1; then
    die "no device $dev"
  fi
  local ns device
  if have_netem; then
    local args
    args=$(netem_args)
    [[ -n "$args" ]] || die "nothing to apply: give at least one impairment"
    while read -r ns device; do
      # shellcheck disable=SC2086 # netem's arguments are words on purpose
      in_ns "$ns" tc qdisc replace dev "$device" root netem $args
    done < <(egress_points)
    return
  fi
  echo "netem: not available in this kernel ($NETEM_REASON); using nftables for loss, tbf for rate, sonde impair for the rest" >&2
  local needs_relay=0
  [[ -z "$delay$reorder$duplicate$loss_model" ]] || needs_relay=1
  if ((needs_relay)) && [[ "$target" == dev ]]; then
    die "delay, jitter, reorder, duplicate and --loss-model need netem, which this kernel lacks: nothing applied. On any kernel: sonde impair --listen ADDR --forward ADDR (see sonde impair --help), or use --lab"
  fi
  [[ -n "$loss$rate" ]] || ((needs_relay)) || die "nothing to apply: give at least one impairment"
  # Apply, rolling everything back if a step fails.
  trap 'echo "netem.sh: a step failed; rolling back" >&2; dry_run=0; clear_target; exit 1' ERR
  if [[ -n "$loss" && "$needs_relay" == 0 ]]; then
    if [[ "$target" == dev ]]; then
      echo "netem.sh: loss on $dev applies to what it receives (nftables ingress): a drop on a host's own egress is refused to the sender (EPERM) rather than lost" >&2
    fi
    while read -r ns device; do nft_loss "$ns" "$device"; done < <(ingress_points)
  fi
  if [[ -n "$rate" && "$target" == dev ]]; then
    echo "netem.sh: rate on $dev shapes its egress with tbf: when the queue is full, senders on this host get ENOBUFS rather than silent loss" >&2
    in_ns - tc qdisc replace dev "$dev" root tbf rate "$rate" burst 32kbit latency 400ms
  elif [[ -n "$rate" ]]; then
    while read -r ns device; do tbf_ingress "$ns" "$device"; done < <(ingress_points)
  fi
  if ((needs_relay)); then
    # The relay applies loss too, so that all impairments act on the same datagrams.
    local direction=both
    [[ "$target" == lab-one-way ]] && direction=up
    start_relay "$direction"
    echo "delay/jitter/reorder/duplicate${loss:+/loss}${loss_model:+/loss-model} applied by sonde impair in $NS_B: ping $ADDR_B:$RELAY_PORT, which relays to the echo at $ADDR_B:$ECHO_PORT" >&2
  fi
  trap - ERR
}

# Runs a read-only command in namespace $1 ("-" = host), quietly.
probe_ns() {
  local ns="$1"
  shift
  if [[ "$ns" == - ]]; then "$@"; else ip netns exec "$ns" "$@"; fi
}

clear_target() {
  local ns device
  # Both ends of the lab link, whatever the direction applied: clear is total.
  local points
  points=$(
    egress_points
    ingress_points
  )
  while read -r ns device; do
    if probe_ns "$ns" nft list table netdev "$NFT_TABLE" >/dev/null 2>&1; then
      in_ns "$ns" nft delete table netdev "$NFT_TABLE"
    fi
    if probe_ns "$ns" tc qdisc show dev "$device" | grep -qE 'qdisc (netem|tbf) [0-9a-f]+: root'; then
      in_ns "$ns" tc qdisc del dev "$device" root
    fi
    if [[ "$ns" != - ]]; then
      if probe_ns "$ns" tc qdisc show dev "$device" | grep -q 'qdisc ingress ffff:'; then
        in_ns "$ns" tc qdisc del dev "$device" handle ffff: ingress
      fi
      if probe_ns "$ns" ip link show "$IFB" >/dev/null 2>&1; then
        in_ns "$ns" ip link del "$IFB"
      fi
    fi
  done < <(sort -u <<<"$points")
  if [[ "$target" != dev ]]; then stop_relay; fi
}

clear_cmd() {
  parse_target_and_impairments "$@"
  need_root clear
  if [[ "$target" != dev ]] && ! ns_exists "$NS_A"; then
    echo "lab $LAB is down: nothing to clear"
    return
  fi
  clear_target
}

show() {
  parse_target_and_impairments "$@"
  local ns device points
  points=$(
    egress_points
    ingress_points
  )
  while read -r ns device; do
    echo "== ${ns/#-/host} $device"
    probe_ns "$ns" tc qdisc show dev "$device"
    if [[ "$ns" != - ]] && probe_ns "$ns" ip link show "$IFB" >/dev/null 2>&1; then
      probe_ns "$ns" tc qdisc show dev "$IFB"
    fi
    probe_ns "$ns" nft list table netdev "$NFT_TABLE" 2>/dev/null || echo "(no nft table $NFT_TABLE)"
  done < <(sort -u <<<"$points")
  if [[ "$target" != dev && -f "$STATE/impair.pid" ]]; then
    echo "sonde impair running (pid $(cat "$STATE/impair.pid")) on $ADDR_B:$RELAY_PORT"
  fi
}

# --- the loss sweep ------------------------------------------------------------------------

# What a sweep started, for its EXIT trap (which runs after the function's locals are gone).
SWEEP_PIDS=() SWEEP_VIA="" SWEEP_LAB_MADE=0 SWEEP_WORK=""
cleanup_sweep() {
  local pid
  for pid in "${SWEEP_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  if [[ -n "$SWEEP_VIA" && "$SWEEP_VIA" != impair ]]; then
    target=lab-one-way clear_target >/dev/null 2>&1 || true
    if ((SWEEP_LAB_MADE)); then lab_down quiet >/dev/null 2>&1; fi
  fi
  if [[ -n "$SWEEP_WORK" ]]; then rm -rf "$SWEEP_WORK"; fi
}

# Reads "listening on ADDR" from a background process's log; prints ADDR.
wait_listening() {
  local log="$1"
  for _ in $(seq 50); do
    if grep -q "listening on" "$log" 2>/dev/null; then
      sed -n 's/.*listening on \([^ ,;]*\).*/\1/p' "$log" | head -n1
      return
    fi
    sleep 0.1
  done
  die "no 'listening on' line in $log: $(cat "$log")"
}

sweep() {
  local losses="0 1 2 5 10 20" sizes="64 512 1400" pps=2000 count=4000 via=auto out=sweep-out
  while (($#)); do
    case "$1" in
    --losses) losses="$2"; shift 2 ;;
    --sizes) sizes="$2"; shift 2 ;;
    --rate) pps="$2"; shift 2 ;;
    --count) count="$2"; shift 2 ;;
    --via) via="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --sonde) export SONDE="$2"; shift 2 ;;
    -h | --help) usage; exit 0 ;;
    *) echo "netem.sh: unknown sweep option $1 (see --help)" >&2; exit 2 ;;
    esac
  done
  command -v python3 >/dev/null || die "sweep needs python3 (to read JSON and draw the SVG)"
  if [[ "$via" == auto ]]; then
    if ((EUID != 0)); then via=impair
    elif have_netem; then via=netem
    else via=nft; fi
  fi
  case "$via" in netem | nft | impair) ;; *) echo "netem.sh: --via takes auto, netem, nft or impair" >&2; exit 2 ;; esac
  if [[ "$via" == netem ]] && ! have_netem; then die "--via netem: $NETEM_REASON"; fi
  local sonde
  sonde=$(sonde_bin)
  mkdir -p "$out"
  local csv="$out/loss-sweep.csv" work
  work=$(mktemp -d)
  SWEEP_WORK="$work" SWEEP_VIA="$via"
  echo "via,configured_loss_pct,payload_bytes,sent,received,measured_loss_pct,rtt_p50_us,rtt_p99_us" >"$csv"
  trap cleanup_sweep EXIT
  local echo_addr ping_prefix=()
  if [[ "$via" == impair ]]; then
    "$sonde" echo --bind 127.0.0.1:0 >"$work/echo.log" 2>&1 &
    SWEEP_PIDS+=($!)
    echo_addr=$(wait_listening "$work/echo.log")
  else
    need_root "sweep --via $via"
    if ! { ns_exists "$NS_A" && ns_exists "$NS_B"; }; then
      lab_up >/dev/null
      SWEEP_LAB_MADE=1
    fi
    ip netns exec "$NS_B" "$sonde" echo --bind "$ADDR_B:$ECHO_PORT" >"$work/echo.log" 2>&1 &
    SWEEP_PIDS+=($!)
    echo_addr=$(wait_listening "$work/echo.log")
    ping_prefix=(ip netns exec "$NS_A")
  fi
  local l size target_addr json
  for l in $losses; do
    target_addr="$echo_addr"
    if [[ "$via" == impair ]]; then
      "$sonde" impair --listen 127.0.0.1:0 --forward "$echo_addr" --loss "$l%" --direction up --seed 1 \
        >"$work/impair.log" 2>&1 &
      local relay=$!
      SWEEP_PIDS+=("$relay")
      target_addr=$(wait_listening "$work/impair.log")
    elif [[ "$l" != 0 ]]; then
      (
        target=lab-one-way loss="$l%"
        if [[ "$via" == netem ]]; then
          in_ns "$NS_A" tc qdisc replace dev "$DEV_A" root netem loss "$l%"
        else
          nft_loss "$NS_B" "$DEV_B"
        fi
      )
    fi
    for size in $sizes; do
      echo "sweep: loss $l% via $via, payload $size B, $count probes at $pps/s" >&2
      json=$("${ping_prefix[@]}" "$sonde" ping "$target_addr" --rate "$pps" --count "$count" \
        --size "$size" --timeout 500ms --json)
      python3 -c '
import json, sys
s = json.loads(sys.argv[1]); r = s["rtt"] or {}
print("%s,%s,%s,%d,%d,%.3f,%.1f,%.1f" % (sys.argv[2], sys.argv[3], sys.argv[4], s["sent"],
      s["received"], s["loss_pct"], r.get("p50_us", 0), r.get("p99_us", 0)))' \
        "$json" "$via" "$l" "$size" >>"$csv"
    done
    if [[ "$via" == impair ]]; then kill -INT "$relay"; wait "$relay" || true
    else target=lab-one-way clear_target >/dev/null 2>&1; fi
  done
  plot_sweep "$csv" "$out/loss-sweep.svg"
  column -s, -t "$csv" 2>/dev/null || cat "$csv"
  echo "wrote $csv and $out/loss-sweep.svg" >&2
}

# Measured against configured loss, one series per payload size, with the y = x line.
plot_sweep() {
  python3 - "$1" "$2" <<'PY'
import csv, math, sys
rows = list(csv.DictReader(open(sys.argv[1])))
nice = lambda v: math.ceil(v / 5.0) * 5 if v > 5 else max(1, math.ceil(v))
W, H, L, B, T, R = 640, 420, 60, 50, 30, 130
xmax = nice(max([float(r["configured_loss_pct"]) for r in rows] + [1.0]))
ymax = nice(max([float(r["measured_loss_pct"]) for r in rows] + [xmax]))
sx = lambda x: L + (W - L - R) * x / xmax
sy = lambda y: H - B - (H - B - T) * y / ymax
colors = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e"]
out = ['<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="12">' % (W, H),
       '<rect width="100%" height="100%" fill="white"/>',
       '<text x="%d" y="18" font-size="14">sonde loss sweep (%s): measured vs configured loss</text>' % (L, rows[0]["via"] if rows else ""),
       '<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="black"/>' % (L, H - B, W - R, H - B),
       '<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="black"/>' % (L, H - B, L, T),
       '<text x="%d" y="%d" text-anchor="middle">configured loss (%%)</text>' % ((L + W - R) / 2, H - 12),
       '<text x="16" y="%d" transform="rotate(-90 16 %d)" text-anchor="middle">measured loss (%%)</text>' % ((H - B + T) / 2, (H - B + T) / 2),
       '<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#999" stroke-dasharray="4 3"/>' % (sx(0), sy(0), sx(xmax), sy(min(xmax, ymax)))]
for i in range(6):
    x, y = xmax * i / 5, ymax * i / 5
    out.append('<text x="%.1f" y="%d" text-anchor="middle">%.3g</text>' % (sx(x), H - B + 16, x))
    out.append('<text x="%d" y="%.1f" text-anchor="end">%.3g</text>' % (L - 6, sy(y) + 4, y))
sizes = sorted({r["payload_bytes"] for r in rows}, key=int)
for k, size in enumerate(sizes):
    pts = sorted((float(r["configured_loss_pct"]), float(r["measured_loss_pct"])) for r in rows if r["payload_bytes"] == size)
    c = colors[k % len(colors)]
    out.append('<polyline fill="none" stroke="%s" stroke-width="2" points="%s"><title>%s B</title></polyline>' % (c, " ".join("%.1f,%.1f" % (sx(x), sy(y)) for x, y in pts), size))
    for x, y in pts:
        out.append('<circle cx="%.1f" cy="%.1f" r="3" fill="%s"/>' % (sx(x), sy(y), c))
    out.append('<text x="%d" y="%d" fill="%s">%s B</text>' % (W - R + 10, T + 20 + 18 * k, c, size))
out.append('<text x="%d" y="%d" fill="#999">y = x</text>' % (W - R + 10, T + 20 + 18 * len(sizes)))
out.append("</svg>")
open(sys.argv[2], "w").write("\n".join(out) + "\n")
PY
}

main() {
  (($#)) || { usage; exit 2; }
  local cmd="$1"
  shift
  case "$cmd" in
  lab)
    case "${1:-}" in
    up) lab_up ;;
    down) lab_down ;;
    status) lab_status ;;
    -h | --help) usage ;;
    *) echo "netem.sh: lab takes up, down or status" >&2; exit 2 ;;
    esac
    ;;
  apply) apply "$@" ;;
  clear) clear_cmd "$@" ;;
  show) show "$@" ;;
  sweep) sweep "$@" ;;
  -h | --help | help) usage ;;
  *) echo "netem.sh: unknown command $cmd (see --help)" >&2; exit 2 ;;
  esac
}

main "$@"
