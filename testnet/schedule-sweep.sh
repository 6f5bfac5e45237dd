#!/usr/bin/env bash
# The learning-rate schedules of the peers, in the simulator: Fashion-MNIST, MLP, 8 peers,
# the simulation's defaults otherwise, 60 rounds evaluated every 2 rounds on the whole test
# split, on iid and Dirichlet(0.5) shards; for each schedule the gossip (today's rule) and
# the exact-averaging reference. Prints one line per run with the samples per peer at the
# first evaluation where every peer is at 85% (all_reached_samples; null = not within 60
# rounds) and the final mean and lowest accuracy (docs/benchmarks.md, "Learning-rate
# schedule"). SEED=<n> picks the seed (default 1); ONLY=<prefix> runs the schedules whose
# name starts with it.
#
#   MURMUR=target/release/murmur testnet/schedule-sweep.sh
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/lib.sh"
M=${MURMUR:-$here/../target/release/murmur}
# name|lr|lr_decay_samples
schedules=(
  "lr 0.05 constant (the previous default)|0.05|0"
  "lr 0.05, decay 10,000|0.05|10000"
  "lr 0.05, decay 20,000|0.05|20000"
  "lr 0.1 constant|0.1|0"
  "lr 0.1, decay 10,000|0.1|10000"
  "lr 0.1, decay 20,000|0.1|20000"
  "lr 0.1, decay 30,000 (the default)|0.1|30000"
  "lr 0.1, decay 40,000|0.1|40000"
  "lr 0.15, decay 20,000|0.15|20000"
  "lr 0.2, decay 10,000|0.2|10000"
)
only=${ONLY:-}
for s in "${schedules[@]}"; do
  IFS='|' read -r name lr decay <<<"$s"
  [[ -n $only && $name != $only* ]] && continue
  for part in iid dirichlet:0.5; do
    for mode in gossip exact; do
      exact=(); [[ $mode == exact ]] && exact=(--exact-averaging)
      f=$(mktemp --suffix=.toml)
      {
        fmnist_scenario "$part" 60 "${SEED:-1}"
        printf '\n[eval]\nevery_rounds = 2\n\n[config.training]\nlr = %s\nlr_decay_samples = %s\n' "$lr" "$decay"
      } > "$f"
      out=$("$M" sim --scenario "$f" "${exact[@]}" --json 2>/dev/null | tail -1)
      echo "SCHED part=$part mode=$mode schedule=\"$name\" $(jq -c '{all_reached_samples, mean_accuracy, min_accuracy}' <<<"$out")"
      rm -f "$f"
    done
  done
done
