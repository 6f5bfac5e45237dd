#!/usr/bin/env bash
# Takes the averaging rule apart one mechanism at a time, in the simulator: Fashion-MNIST,
# MLP, 8 peers, seed 1, the simulation's defaults and the whole test split, on iid and
# Dirichlet(0.5) shards; prints one line per variant with the samples per peer at the first
# evaluation where every peer is at 85% (all_reached_samples), the final mean accuracy, the
# bytes each peer received, blocks and refused models; the last line per partition is the
# exact-averaging reference (docs/benchmarks.md, "The exact-averaging reference beside the
# gossip"). "previous rule" rows are the rule before the same-round exchange, with the
# learning rate of then (0.05, constant; testnet/schedule-sweep.sh compares schedules). ONLY=<prefix>
# runs only the variants whose name starts with it.
#
#   MURMUR=target/release/murmur testnet/ablation.sh
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/lib.sh"
M=${MURMUR:-$here/../target/release/murmur}
variants=(
  "defaults|"
  "mean (no clipping)|[config.averaging]
aggregation = \"mean\""
  "f32 (no int8)|[config.averaging]
encoding = \"f32\""
  "no distance or loss check|[config.averaging]
max_distance = 0.0
accept_loss_ratio = 0.0"
  "fanout 2|[config.averaging]
fanout = 2"
  "fanout 4|[config.averaging]
fanout = 4"
  "momentum reset at merges|[config.training]
momentum_mode = \"reset\""
  "10 steps a round|[config.averaging]
round_steps = 10"
  "lr 0.05 constant (the previous schedule)|[config.training]
lr = 0.05
lr_decay_samples = 0"
  "previous rule: prefer-fresh, fanout 2|[config.averaging]
staleness = \"prefer-fresh\"
fanout = 2
[config.training]
lr = 0.05
lr_decay_samples = 0"
  "previous rule, fanout 7|[config.averaging]
staleness = \"prefer-fresh\"
[config.training]
lr = 0.05
lr_decay_samples = 0"
  "previous rule, no lag weighting|[config.averaging]
staleness = \"ignore\"
fanout = 2
[config.training]
lr = 0.05
lr_decay_samples = 0"
  "previous rule, 5 steps a round|[config.averaging]
staleness = \"prefer-fresh\"
fanout = 2
round_steps = 5
[config.training]
lr = 0.05
lr_decay_samples = 0"
  "exact averaging|"
)
only=${ONLY:-}
for part in iid dirichlet:0.5; do
  for v in "${variants[@]}"; do
    name=${v%%|*}; extra=${v#*|}
    [[ -n $only && $name != $only* ]] && continue
    rounds=200; [[ $name == *5\ steps* ]] && rounds=800; [[ $name == *10\ steps* ]] && rounds=400
    exact=(); [[ $name == exact* ]] && exact=(--exact-averaging)
    f=$(mktemp --suffix=.toml)
    { fmnist_scenario "$part" "$rounds" 1; echo "$extra"; } > "$f"
    out=$("$M" sim --scenario "$f" "${exact[@]}" --json 2>/dev/null | tail -1)
    echo "ABL part=$part variant=\"$name\" $(jq -c '{all_reached_samples, mean_accuracy, bytes: ([.peers[].bytes_received] | add / length | floor), blocks, rejected: ([.peers[].merges_rejected] | add)}' <<<"$out")"
    rm -f "$f"
  done
done
