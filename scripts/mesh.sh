#!/usr/bin/env bash
# mesh.sh: a small network watched the way sonde is meant to be used (Linux, root).
#
# N hosts, each a network namespace on one bridge (198.18.1.0/24), each running `sonde echo` and
# one `sonde ping` of all the others with `--metrics`; one Prometheus scraping every host. One
# path can be impaired with `sonde impair` (a userspace netem, per path and on any kernel: the
# impaired host's pinger reaches its peer through the relay). `matrix` prints the loss and
# median round trip of every path from PromQL, so the impaired one stands out.
set -Eeuo pipefail
# shellcheck source=lib.sh source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

readonly MESH="${SONDE_MESH:-sonde-mesh}"
readonly SWITCH="${MESH}-sw" BRIDGE=br0
# RFC 2544's benchmarking range: never 10/8, 172.16/12 or 192.168/16.
readonly NET=198.18.1 PREFIX=24 PROM_ADDR=198.18.1.254
readonly ECHO_PORT=9999 RELAY_PORT=9998 METRICS_PORT=9464 PROM_PORT=9090
readonly STATE="/run/${MESH}"
readonly MAX_HOSTS=20
# Finer than sonde's default 1-2-5 steps where a LAN's round trips are: Prometheus estimates a
# quantile by interpolating within a bucket, and a 2-5 ms bucket would put any 2.1 ms at 3.5.
readonly BUCKETS=25us,50us,75us,100us,150us,200us,300us,500us,750us,1ms,1500us,2ms,2500us,3ms,4ms,5ms,7500us,10ms,20ms,50ms,100ms,250ms,500ms,1s

usage() {
  cat <<'EOF'
usage: scripts/mesh.sh COMMAND [options]

Commands:
  up       the mesh: hosts, their echoes and pingers, Prometheus
  matrix   loss and median round trip of every path, from Prometheus (PromQL)
  down     remove everything `up` made; safe to run twice
  run      up, wait --seconds, matrix, down (down also on failure or Ctrl-C)

Options (up, run):
  --hosts N          hosts in the mesh, 2 to 20 (default 3); host i is MESH-hi at 198.18.1.i
  --rate PPS         probes per second to each peer (default 20)
  --impair A-B       impair the path from host A to host B (e.g. 1-2) on the way there (so
                     the round trip shows what is set), with:
  --loss P%          random loss (default 10%)
  --delay D          added delay, humantime (default 2ms)
  --duration D       how long the pingers run before stopping by themselves (default 10m)
  --sonde PATH       the sonde binary (default $SONDE, target/release/sonde, or PATH)
Options (matrix, run):
  --window D         the PromQL range (default 20s; run: its --seconds)
  --seconds S        run: how long to measure before the matrix (default 20)

MESH is $SONDE_MESH (default sonde-mesh). Prometheus (Debian's package) must be installed.
EOF
}

die() {
  echo "mesh.sh: $*" >&2
  exit 1
}

need_root() {
  ((EUID == 0)) || die "$1 needs root (network namespaces)"
}

host_ns() { echo "${MESH}-h$1"; }

# Starts a command in a namespace, in the background, its output in STATE/NAME.log and its pid
# in STATE/NAME.pid (for `down`).
spawn() {
  local ns="$1" name="$2"
  shift 2
  ip netns exec "$ns" "$@" >"$STATE/$name.log" 2>&1 &
  echo $! >"$STATE/$name.pid"
  disown
}

# --- up --------------------------------------------------------------------------------------

hosts=3 rate=20 impair="" loss=10% delay=2ms duration=10m window="" seconds=20

mesh_up() {
  need_root "up"
  command -v prometheus >/dev/null || die "prometheus is not installed (apt-get install prometheus)"
  ((hosts >= 2 && hosts <= MAX_HOSTS)) || die "--hosts $hosts: from 2 to $MAX_HOSTS"
  local sonde a="" b=""
  sonde=$(sonde_bin)
  if [[ -n "$impair" ]]; then
    [[ "$impair" =~ ^([0-9]+)-([0-9]+)$ ]] || die "--impair $impair: expected A-B, e.g. 1-2"
    a=${BASH_REMATCH[1]} b=${BASH_REMATCH[2]}
    ((a >= 1 && a <= hosts && b >= 1 && b <= hosts && a != b)) ||
      die "--impair $impair: two different hosts from 1 to $hosts"
  fi
  if ns_exists "$SWITCH"; then die "mesh $MESH is already up (scripts/mesh.sh down first)"; fi
  mkdir -p "$STATE"
  echo "$hosts" >"$STATE/hosts"
  ip netns add "$SWITCH"
  ip -n "$SWITCH" link set lo up
  ip -n "$SWITCH" link add "$BRIDGE" type bridge
  ip -n "$SWITCH" link set "$BRIDGE" up
  # Prometheus lives on the switch, with an address on the bridge to reach every host.
  ip -n "$SWITCH" addr add "$PROM_ADDR/$PREFIX" dev "$BRIDGE"
  local i j
  for ((i = 1; i <= hosts; i++)); do
    local ns
    ns=$(host_ns "$i")
    ip netns add "$ns"
    ip -n "$ns" link set lo up
    ip link add eth0 netns "$ns" type veth peer name "h$i" netns "$SWITCH"
    ip -n "$SWITCH" link set "h$i" master "$BRIDGE" up
    ip -n "$ns" addr add "$NET.$i/$PREFIX" dev eth0
    ip -n "$ns" link set eth0 up
  done
  for ((i = 1; i <= hosts; i++)); do
    local ns targets="$STATE/targets-h$i"
    ns=$(host_ns "$i")
    spawn "$ns" "echo-h$i" "$sonde" echo --bind "$NET.$i:$ECHO_PORT"
    : >"$targets"
    for ((j = 1; j <= hosts; j++)); do
      ((i == j)) && continue
      local to="$NET.$j:$ECHO_PORT"
      if [[ "$i" == "$a" && "$j" == "$b" ]]; then
        # This path goes through the relay on host A, impaired on the way to B.
        spawn "$ns" "impair-h$i-h$j" "$sonde" impair --listen "$NET.$i:$RELAY_PORT" \
          --forward "$to" --loss "$loss" --delay "$delay" --direction up --seed 1
        to="$NET.$i:$RELAY_PORT"
      fi
      echo "$to name=h$j src=h$i dst=h$j" >>"$targets"
    done
  done
  sleep 0.5 # the echoes and the relay bind
  for ((i = 1; i <= hosts; i++)); do
    spawn "$(host_ns "$i")" "ping-h$i" "$sonde" ping --targets "$STATE/targets-h$i" \
      --rate "$rate" --duration "$duration" --timeout 500ms --quiet \
      --metrics "$NET.$i:$METRICS_PORT" --metrics-buckets "$BUCKETS"
  done
  write_prometheus_config
  spawn "$SWITCH" prometheus prometheus --config.file="$STATE/prometheus.yml" \
    --storage.tsdb.path="$STATE/prometheus-data" --web.listen-address="127.0.0.1:$PROM_PORT"
  wait_for_scrapes
  echo "mesh $MESH up: $hosts hosts on $NET.0/$PREFIX, ${impair:+path h$a -> h$b impaired ($loss loss, $delay delay), }Prometheus in $SWITCH at 127.0.0.1:$PROM_PORT"
}

write_prometheus_config() {
  local i list=""
  for ((i = 1; i <= hosts; i++)); do
    list+="${list:+, }'$NET.$i:$METRICS_PORT'"
  done
  cat >"$STATE/prometheus.yml" <<EOF
global:
  scrape_interval: 1s
  scrape_timeout: 900ms
scrape_configs:
  - job_name: sonde
    static_configs:
      - targets: [$list]
EOF
}

# PromQL against the mesh's Prometheus; prints the JSON answer.
promql() {
  ip netns exec "$SWITCH" python3 - "$1" "$PROM_PORT" <<'EOF'
import json, sys, urllib.parse, urllib.request
query, port = sys.argv[1], sys.argv[2]
url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": query})
try:
    print(urllib.request.urlopen(url, timeout=5).read().decode())
except Exception as e:
    print(json.dumps({"status": "error", "error": str(e)}))
EOF
}

# Waits until Prometheus scrapes every host (it hands out new targets every 5 s).
wait_for_scrapes() {
  local deadline=$((SECONDS + 30)) up
  while ((SECONDS < deadline)); do
    up=$(promql 'count(up == 1)' | python3 -c '
import json, sys
r = json.load(sys.stdin).get("data", {}).get("result", [])
print(r[0]["value"][1] if r else 0)')
    [[ "$up" == "$(cat "$STATE/hosts")" ]] && return
    sleep 0.5
  done
  die "Prometheus does not scrape every host (see $STATE/prometheus.log and $STATE/ping-*.log)"
}

# --- matrix ----------------------------------------------------------------------------------

mesh_matrix() {
  ns_exists "$SWITCH" || die "mesh $MESH is not up"
  local w="${window:-20s}"
  local loss p50
  loss=$(promql "sum by (src, dst) (increase(sonde_probes_lost_total[$w])) / sum by (src, dst) (increase(sonde_probes_sent_total[$w]))")
  p50=$(promql "histogram_quantile(0.5, sum by (src, dst, le) (rate(sonde_rtt_seconds_bucket[$w])))")
  python3 - "$(cat "$STATE/hosts")" "$w" "$loss" "$p50" <<'EOF'
import json, sys
hosts, window = int(sys.argv[1]), sys.argv[2]
def cells(answer):
    data = json.loads(answer)
    if data.get("status") != "success":
        sys.exit(f"mesh.sh: Prometheus said: {data.get('error', data)}")
    return {(r["metric"]["src"], r["metric"]["dst"]): float(r["value"][1])
            for r in data["data"]["result"]}
loss, p50 = cells(sys.argv[3]), cells(sys.argv[4])
names = [f"h{i}" for i in range(1, hosts + 1)]
def table(title, values, fmt):
    print(f"{title} (rows: from, columns: to; over the last {window})")
    print("      " + "".join(f"{n:>10}" for n in names))
    for src in names:
        row = ""
        for dst in names:
            v = values.get((src, dst))
            row += f"{'-' if src == dst or v is None or v != v else fmt(v):>10}"
        print(f"{src:<6}{row}")
    print()
table("loss", loss, lambda v: f"{100 * v:.1f}%")
table("rtt p50, Prometheus's estimate from the buckets", p50, lambda v: f"{v * 1e3:.3f}ms")
EOF
}

# --- down ------------------------------------------------------------------------------------

mesh_down() {
  need_root "down"
  local pid_file pids=()
  if [[ -d "$STATE" ]]; then
    for pid_file in "$STATE"/*.pid; do
      [[ -e "$pid_file" ]] && pids+=("$(cat "$pid_file")")
    done
  fi
  if ((${#pids[@]})); then
    # SIGTERM: each prints what it measured (a pinger waits for a last scrape, 3 s at most).
    kill "${pids[@]}" 2>/dev/null || true
    local deadline=$((SECONDS + 5))
    while ((SECONDS < deadline)) && kill -0 "${pids[@]}" 2>/dev/null; do
      sleep 0.1
    done
    kill -9 "${pids[@]}" 2>/dev/null || true
  fi
  local ns
  for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep -E "^${MESH}-(sw|h[0-9]+)$" || true); do
    # Whatever still runs in it (a process started by hand) goes with it.
    ip netns pids "$ns" 2>/dev/null | xargs -r kill -9 2>/dev/null || true
    ip netns del "$ns"
  done
  rm -rf "$STATE"
  echo "mesh $MESH down"
}

# --- main ------------------------------------------------------------------------------------

main() {
  local command="${1:-}"
  [[ -n "$command" ]] || { usage >&2; exit 2; }
  shift
  while (($#)); do
    case "$1" in
      --hosts) hosts="$2"; shift 2 ;;
      --rate) rate="$2"; shift 2 ;;
      --impair) impair="$2"; shift 2 ;;
      --loss) loss="$2"; shift 2 ;;
      --delay) delay="$2"; shift 2 ;;
      --duration) duration="$2"; shift 2 ;;
      --window) window="$2"; shift 2 ;;
      --seconds) seconds="$2"; shift 2 ;;
      --sonde) export SONDE="$2"; shift 2 ;;
      -h | --help) usage; exit 0 ;;
      *) usage >&2; die "unknown option: $1" ;;
    esac
  done
  [[ "$hosts" =~ ^[0-9]+$ ]] || die "--hosts $hosts: a number"
  [[ "$seconds" =~ ^[0-9]+$ ]] || die "--seconds $seconds: a number of seconds"
  case "$command" in
    up) mesh_up ;;
    matrix) mesh_matrix ;;
    down) mesh_down ;;
    run)
      need_root "run"
      trap 'mesh_down >/dev/null' EXIT
      trap 'exit 130' INT TERM
      mesh_up
      echo "measuring for ${seconds}s..."
      sleep "$seconds"
      window="${window:-${seconds}s}"
      mesh_matrix
      ;;
    *) usage >&2; die "unknown command: $command" ;;
  esac
}

main "$@"
