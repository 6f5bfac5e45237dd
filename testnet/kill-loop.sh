#!/usr/bin/env bash
# Kill -9 a node while it writes checkpoints, in a loop; every restart must load a complete,
# verified checkpoint:
#   ITERATIONS=1000 testnet/kill-loop.sh        (default 1000; CI runs 20)
# One peer (`murmur run`, no other peers) on the built-in digits, checkpointing after every
# round (store.checkpoint_every_secs = 0.01; a round takes at least 0.25 s), with a model of
# ~300 KB so that a write takes a few milliseconds. Each iteration:
#   1. start the node on the same data dir; from the second iteration on, it must log
#      "resumed from checkpoint" with the version the previous iteration verified (a node
#      that cannot load its checkpoint refuses to start, and that counts as a failed load);
#   2. kill -9 it: odd iterations at a random instant 0 to 1 s after it resumed, even ones
#      as soon as `checkpoint.bin.tmp` appears (in the middle of a write);
#   3. `murmur checkpoint verify` the checkpoint it left: sizes, trailing blake3, manifest id,
#      every chunk hash. A failure is a torn checkpoint.
# Prints the counts and exits non-zero on any torn checkpoint or failed load.
# Needs the release binary (cargo build --release) or MURMUR=<path to murmur>; bash, awk.
set -euo pipefail
TESTNET_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$TESTNET_DIR/.." && pwd)"
ITERATIONS="${ITERATIONS:-1000}"
MURMUR="${MURMUR:-${CARGO_TARGET_DIR:-$ROOT/target}/release/murmur}"
MODEL="${KILL_LOOP_MODEL:-mlp:1024}"
[[ "$ITERATIONS" =~ ^[0-9]+$ ]] && [ "$ITERATIONS" -ge 1 ] || { echo "ITERATIONS must be >= 1" >&2; exit 2; }
[ -x "$MURMUR" ] || { echo "no murmur binary at $MURMUR (cargo build --release, or set MURMUR)" >&2; exit 2; }

say() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*"; }

WORK="$(mktemp -d "${TMPDIR:-/tmp}/murmur-kill-loop.XXXXXX")"
DATA="$WORK/data"
CKPT="$DATA/checkpoint.bin"
LOG="$WORK/node.log"
PID=""
cleanup() {
  if [ -n "$PID" ]; then kill -9 "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; fi
  if [ "${KEEP_WORK:-0}" = 1 ] || [ "${failed:-1}" -ne 0 ]; then
    echo "work dir kept: $WORK" >&2
  else
    rm -rf "$WORK"
  fi
}
trap cleanup EXIT

cat > "$WORK/peer.toml" <<TOML
# The kill loop's peer (written by testnet/kill-loop.sh).
network_id = "kill-loop"
data_dir = "$DATA"

[network]
listen = ["/ip4/127.0.0.1/tcp/0"]
bootstrap = []
mdns = false
kademlia = false

[training]
dataset = "digits"
model = "$MODEL"
threads = 1

[averaging]
round_steps = 5

[store]
checkpoint_every_secs = 0.01

[dashboard]
listen = "127.0.0.1:0"
TOML

# now_ms: milliseconds since the epoch.
now_ms() { date +%s%3N; }

# start_node: starts the node in the background, its log in $LOG.
start_node() {
  : > "$LOG"
  RUST_LOG=info "$MURMUR" run --config "$WORK/peer.toml" >>"$LOG" 2>&1 &
  PID=$!
}

# wait_log PATTERN SECS: waits until the log matches PATTERN; 1 if the node died or on timeout.
wait_log() {
  local deadline=$(( $(now_ms) + $2 * 1000 ))
  until grep -q -- "$1" "$LOG"; do
    kill -0 "$PID" 2>/dev/null || return 1
    [ "$(now_ms)" -lt "$deadline" ] || return 1
    sleep 0.01
  done
}

# kill_now: kill -9 the node and reap it.
kill_now() {
  kill -9 "$PID" 2>/dev/null || true
  wait "$PID" 2>/dev/null || true
  PID=""
}

iterations=0; torn=0; failed_loads=0; mid_write=0; partial=0; random_kills=0; write_kills=0
expected_version=""   # the version the last verified checkpoint holds
T0=$(date +%s)
say "kill loop: $ITERATIONS iterations, model $MODEL, work dir $WORK"
for it in $(seq 1 "$ITERATIONS"); do
  started_at=$(now_ms)
  start_node
  if [ -n "$expected_version" ]; then
    if ! wait_log "resumed from checkpoint" 30; then
      failed_loads=$((failed_loads + 1))
      say "iteration $it: the node did not resume from its checkpoint; log:"; tail -n 20 "$LOG"
      kill_now; break
    fi
    got=$(grep -m1 "resumed from checkpoint" "$LOG" | grep -o 'version=[0-9]*' | head -n1 | cut -d= -f2)
    if [ "$got" != "$expected_version" ]; then
      failed_loads=$((failed_loads + 1))
      say "iteration $it: resumed version ${got:-?}, the verified checkpoint holds $expected_version"
      kill_now; break
    fi
  else
    # First run (or no checkpoint yet): wait for the first checkpoint, then go on.
    deadline=$(( $(now_ms) + 60000 ))
    until [ -e "$CKPT" ]; do
      if ! kill -0 "$PID" 2>/dev/null || [ "$(now_ms)" -ge "$deadline" ]; then
        say "iteration $it: no first checkpoint within 60 s; log:"; tail -n 20 "$LOG"; kill_now; exit 1
      fi
      sleep 0.01
    done
  fi

  if [ $((it % 2)) -eq 0 ]; then
    # In the middle of a write: as soon as a fresh temporary file appears (busy wait, at most
    # 5 s; a .tmp left by the previous kill is overwritten, then renamed away, by the next save).
    deadline=$(( $(now_ms) + 5000 ))
    while [ -e "$CKPT.tmp" ] && [ "$(now_ms)" -lt "$deadline" ]; do :; done
    while [ ! -e "$CKPT.tmp" ] && [ "$(now_ms)" -lt "$deadline" ]; do :; done
    write_kills=$((write_kills + 1))
  else
    sleep "$(awk -v s="$RANDOM" 'BEGIN { printf "%.3f", (s % 1000) / 1000 }')"
    random_kills=$((random_kills + 1))
  fi
  kill_now
  # A .tmp written since this run started: the kill came between its creation and its rename.
  if [ -e "$CKPT.tmp" ] && awk -v m="$(stat -c '%.3Y' "$CKPT.tmp" 2>/dev/null || echo 0)" \
       -v s="$started_at" 'BEGIN { exit !(m * 1000 >= s) }'; then
    mid_write=$((mid_write + 1))
    # ... and before its last byte was written (a torn temporary file, never read).
    if [ "$(stat -c %s "$CKPT.tmp")" -lt "$(stat -c %s "$CKPT" 2>/dev/null || echo 0)" ]; then
      partial=$((partial + 1))
    fi
  fi
  iterations=$it

  if out=$("$MURMUR" checkpoint verify --json "$CKPT" 2>&1); then
    version=$(printf '%s\n' "$out" | grep -o '"version":[0-9]*' | cut -d: -f2)
    if [ -n "$expected_version" ] && [ "$version" -lt "$expected_version" ]; then
      torn=$((torn + 1)); say "iteration $it: checkpoint went back from $expected_version to $version"; break
    fi
    expected_version=$version
  else
    torn=$((torn + 1))
    say "iteration $it: checkpoint does not verify: $out"
    break
  fi
  if [ $((it % 50)) -eq 0 ]; then
    say "$it/$ITERATIONS: torn $torn, failed loads $failed_loads, killed mid-write (a .tmp left) $mid_write, checkpoint version $expected_version"
  fi
done
secs=$(( $(date +%s) - T0 ))
say "kill loop: $iterations iterations in $secs s ($random_kills at a random instant, $write_kills as a write began); kills that left a .tmp (mid-write): $mid_write, of which a short one (torn mid-file): $partial; torn checkpoints: $torn; failed loads: $failed_loads; last verified checkpoint version: ${expected_version:-none}"
if [ "$torn" -eq 0 ] && [ "$failed_loads" -eq 0 ] && [ "$iterations" -eq "$ITERATIONS" ]; then
  failed=0
  echo "KILL-LOOP-OK iterations=$iterations torn=0 failed_loads=0 mid_write=$mid_write partial=$partial secs=$secs"
else
  failed=1
  exit 1
fi
