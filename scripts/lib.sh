# shellcheck shell=bash
# lib.sh: what scripts/netem.sh and scripts/mesh.sh share. Sourced, not run; the sourcing script
# defines die().

# Whether network namespace $1 exists.
ns_exists() {
  ip netns list 2>/dev/null | awk '{print $1}' | grep -qx "$1"
}

# The sonde binary: $SONDE, else this checkout's release build, else sonde on PATH.
sonde_bin() {
  if [[ -n "${SONDE:-}" ]]; then echo "$SONDE"; return; fi
  local here
  here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
  if [[ -x "$here/target/release/sonde" ]]; then echo "$here/target/release/sonde"; return; fi
  command -v sonde || die "no sonde binary: build it (cargo build --release) or set SONDE"
}
