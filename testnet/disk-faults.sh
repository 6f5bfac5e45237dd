#!/usr/bin/env bash
# A full disk and a read-only file system under a running node (needs root: a tmpfs mount):
#   sudo testnet/disk-faults.sh
# Two peers on the digits; peer A's data dir is a 1 MiB tmpfs. Then:
#   1. full disk: a file fills the tmpfs; A's checkpoint writes fail with "No space left on
#      device" (logged with the path, counted in /api/status), A keeps training and B keeps
#      merging A's new models; the file is removed and A checkpoints again;
#   2. read-only: the tmpfs is remounted read-only; writes fail with "Read-only file system",
#      A trains and serves on; remounted read-write, A checkpoints again.
# Through it all, A's checkpoint on disk stays the last one written and verifies.
# Every wait polls with a deadline. Needs the release binary (or MURMUR=...), curl, jq.
set -euo pipefail
source "$(dirname "$0")/lib.sh"  # TESTNET_DIR, ROOT, say, fail, wait_until
POLL_SECS=0.2
MURMUR="${MURMUR:-${CARGO_TARGET_DIR:-$ROOT/target}/release/murmur}"
[ "$(id -u)" -eq 0 ] || { echo "needs root (mounts a tmpfs)" >&2; exit 2; }
[ -x "$MURMUR" ] || { echo "no murmur binary at $MURMUR (cargo build --release, or set MURMUR)" >&2; exit 2; }

WORK="$(mktemp -d "${TMPDIR:-/tmp}/murmur-disk-faults.XXXXXX")"
MNT="$WORK/a-data"
PIDS=()
failed=1
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  if [ "$failed" -ne 0 ]; then
    for n in a b; do echo "----- log of $n (last 30 lines) -----"; tail -n 30 "$WORK/$n.log" 2>/dev/null || true; done
  fi
  umount "$MNT" 2>/dev/null || true
  if [ "$failed" -eq 0 ]; then rm -rf "$WORK"; else echo "work dir kept: $WORK" >&2; fi
}
trap cleanup EXIT

mkdir -p "$MNT"
mount -t tmpfs -o size=1m tmpfs "$MNT"

# config NAME DATA_DIR API_PORT BOOTSTRAP SHARD
config() {
  cat > "$WORK/$1.toml" <<TOML
network_id = "disk-faults"
data_dir = "$2"
[network]
listen = ["/ip4/127.0.0.1/tcp/0"]
bootstrap = $4
mdns = false
[training]
dataset = "digits"
model = "mlp:256"
shard = "$5"
threads = 1
[store]
checkpoint_every_secs = 0.2
[dashboard]
listen = "127.0.0.1:$3"
TOML
}
PORT_A=$((20000 + RANDOM % 20000)); PORT_B=$((PORT_A + 1))
config a "$MNT" "$PORT_A" "[]" "0/2"
"$MURMUR" run --config "$WORK/a.toml" > "$WORK/a.log" 2>&1 & PIDS+=($!)
status_a() { curl -fsS --max-time 2 "http://127.0.0.1:$PORT_A/api/status" 2>/dev/null || true; }
status_b() { curl -fsS --max-time 2 "http://127.0.0.1:$PORT_B/api/status" 2>/dev/null || true; }
a() { status_a | jq -r "$1" 2>/dev/null; }
b() { status_b | jq -r "$1" 2>/dev/null; }
a_checkpointed() { [ "$(a .counters.checkpoints)" -ge 1 ] 2>/dev/null; }
wait_until 30 "peer A listening and checkpointing" a_checkpointed
ADDR="$(a '.listen_addrs[0]')/p2p/$(a .peer_id)"
config b "$WORK/b-data" "$PORT_B" "[\"$ADDR\"]" "1/2"
"$MURMUR" run --config "$WORK/b.toml" > "$WORK/b.log" 2>&1 & PIDS+=($!)
A_ID=$(a .peer_id)
# Distinct models of A that B merged, among its latest averagings.
b_merged_from_a() {
  status_b | jq -r --arg a "$A_ID" '[.averagings[].models[] | select(.peer_id == $a and .error == null) | .manifest] | unique | .[]' 2>/dev/null
}
b_merges_a() { [ "$(b_merged_from_a | wc -l)" -ge 1 ]; }
wait_until 60 "peer B merging A's models" b_merges_a

# fault NAME CAUSE: waits for failures with CAUSE, then checks A trains and serves on.
fault() {
  local name="$1" cause="$2"
  local f0; f0=$(a .counters.checkpoint_failures)
  failing() {
    [ "$(a .counters.checkpoint_failures)" -ge $((f0 + 2)) ] && a .checkpoint_error | grep -q "$cause"
  }
  wait_until 30 "$name: checkpoint failures with \"$cause\"" failing
  local err; err=$(a .checkpoint_error)
  echo "$err" | grep -q "$MNT/checkpoint.bin.tmp" || fail "$name: the error does not name the file: $err"
  grep -q "checkpoint not written.*$cause" "$WORK/a.log" || fail "$name: no clear log line"
  local last; last=$(a .checkpoint_version)
  local v0; v0=$(a .version)
  local seen; seen=$(b_merged_from_a | sort)
  trains() { [ "$(a .version)" -ge $((v0 + 5)) ]; }
  serves() { [ "$(comm -13 <(echo "$seen") <(b_merged_from_a | sort) | wc -l)" -ge 2 ]; }
  wait_until 30 "$name: A training on" trains
  wait_until 60 "$name: B merging 2 new models of A" serves
  a .checkpoint_error | grep -q "$cause" || fail "$name: A stopped failing too early"
  local on_disk; on_disk=$("$MURMUR" checkpoint verify --json "$MNT/checkpoint.bin" | jq .version)
  [ "$on_disk" = "$last" ] || fail "$name: checkpoint on disk holds version $on_disk, A reports $last"
  say "$name: \"$err\"; A trained $(( $(a .version) - v0 )) rounds, B merged new models of A; the checkpoint on disk (version $on_disk) verifies"
}

# recovered NAME: waits until A checkpoints again.
recovered() {
  local name="$1" w0; w0=$(a .counters.checkpoints)
  ok() { [ "$(a .checkpoint_error)" = "null" ] && [ "$(a .counters.checkpoints)" -gt "$w0" ]; }
  wait_until 90 "$name: A checkpointing again" ok
  "$MURMUR" checkpoint verify "$MNT/checkpoint.bin" >/dev/null || fail "$name: checkpoint does not verify"
  say "$name: A checkpoints again (version $(a .checkpoint_version)), $(a .counters.checkpoint_failures) failures in all"
}

# 1. Full disk.
dd if=/dev/zero of="$MNT/fill" bs=64k 2>/dev/null || true
fault "full disk" "No space left on device"
rm -f "$MNT/fill"
recovered "full disk"

# 2. Read-only file system.
# A write in progress makes the remount fail (busy): try again.
remount_ro() { mount -o remount,ro "$MNT" 2>/dev/null; }
wait_until 10 "remounting read-only" remount_ro
fault "read-only" "Read-only file system"
mount -o remount,rw "$MNT"
recovered "read-only"

say "disk faults passed"
failed=0
