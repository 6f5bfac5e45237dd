#!/usr/bin/env bash
# Where each peer's CPU goes: runs `murmur testnet` (8 Fashion-MNIST peers, MLP, Dirichlet
# 0.5 by default) for DURATION seconds, reads every peer's /metrics 3 s before the end
# (murmur_cpu_seconds by activity: docs/api.md, "CPU shares") and prints the shares summed
# over the peers: training steps, merging (checking and averaging partner models),
# evaluation, the async runtime's threads, and the rest (start-up, other threads); then the
# partner models merged, accepted on the screen alone, and refused.
#
#   MURMUR=target/release/murmur testnet/cpu-shares.sh [extra testnet flags]
#   (PEERS=8 PARTITION=dirichlet:0.5 DURATION=30)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
M=${MURMUR:-$here/../target/release/murmur}
peers=${PEERS:-8}
partition=${PARTITION:-dirichlet:0.5}
duration=${DURATION:-30}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
"$M" testnet --peers "$peers" --dataset fashion-mnist --partition "$partition" \
  --duration "$duration" --dir "$dir/net" --json "$@" > "$dir/summary.json" 2> "$dir/testnet.log" &
net=$!
sleep $((duration - 3))
for config in "$dir"/net/peer*.toml; do
  addr=$(grep -E '^listen = "127' "$config" | grep -oE '127\.0\.0\.1:[0-9]+' | head -1)
  curl -fsS "http://$addr/metrics" || echo "# peer at $addr did not answer" >&2
done > "$dir/metrics.txt"
wait "$net"
python3 - "$dir/metrics.txt" <<'PY'
import collections, re, sys
cpu, counts, peers = collections.Counter(), collections.Counter(), 0
for line in open(sys.argv[1]):
    if line.startswith("#"):
        continue
    m = re.match(r'murmur_cpu_seconds_total\{activity="(\w+)"\}\s+(\S+)', line)
    if m:
        cpu[m.group(1)] += float(m.group(2))
        peers += m.group(1) == "process"
        continue
    m = re.match(r'murmur_(merges_total|merges_screened_total|merges_rejected_total|samples_trained_total)\s+(\S+)', line)
    if m:
        counts[m.group(1)] += float(m.group(2))
process = cpu["process"]
if peers == 0 or process <= 0:
    sys.exit("no peer's metrics were read")
known = ["train", "merge", "eval", "runtime"]
shares = {k: 100 * cpu[k] / process for k in known}
shares["other"] = 100 - sum(shares.values())
print(f"{peers} peers, {process / peers:.2f} CPU s per peer, "
      f"{counts['samples_trained_total'] / peers:.0f} samples per peer")
print("  " + ", ".join(f"{k} {v:.1f}%" for k, v in shares.items()))
print(f"  merges {counts['merges_total']:.0f}, partner models accepted on the screen "
      f"{counts['merges_screened_total']:.0f}, refused {counts['merges_rejected_total']:.0f}")
PY
