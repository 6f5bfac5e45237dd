#!/usr/bin/env bash
# Does the simulation predict the real network? For each setup it runs N real peer processes
# (murmur testnet) and the simulation of the same setup (murmur sim, one process), both to
# the same training budget, and prints, side by side, the rounds each peer needed to first
# report the target accuracy (mean over peers), the samples per peer at the first evaluation
# where every peer is at the target at once (the most samples behind a peer's reported
# accuracy then: `all_reached_samples` in both summaries; the ratio sim/real), and the final
# mean and min accuracy.
#
# Both evaluate on the same cadence (a real node evaluates every 2 s of wall time; the
# simulation every 2 s of virtual time, `[eval] every_secs = 2`) and on the same test split (all of it),
# and the simulation is given the real peers' time per round (measured: the real run's
# seconds over its peers' mean version; `[compute] step_ms` = that / 20 steps), so that both
# evaluate after as many rounds. A round is `averaging.round_steps` (20) x
# `training.batch_size` (50) = 1,000 samples.
#
#   testnet/sim-vs-real.sh                      # digits and Fashion-MNIST, 8 peers, Dirichlet 0.5
#   SETUPS="digits:mlp:0.95:60" testnet/sim-vs-real.sh
#
# Environment: MURMUR (default target/release/murmur), PEERS (8), PARTITION (dirichlet:0.5),
# SEEDS (sim seeds, default "1 2 3"), SETUPS ("dataset:model:target:rounds ...").
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
MURMUR=${MURMUR:-$here/../target/release/murmur}
PEERS=${PEERS:-8}
PARTITION=${PARTITION:-dirichlet:0.5}
SEEDS=${SEEDS:-1 2 3}
SETUPS=${SETUPS:-digits:mlp:0.95:60 fashion-mnist:mlp:0.85:150}
SAMPLES_PER_ROUND=1000
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

printf '%-14s %-5s %-6s | %-22s %-22s | %-13s %-26s %-16s | %-16s %-16s\n' dataset model target \
    "rounds to target real" "sim (seeds)" "all at target" "sim (seeds)" "sim/real" \
    "final mean real" "sim"
for setup in $SETUPS; do
    IFS=: read -r dataset model target rounds <<<"$setup"
    budget=$((rounds * SAMPLES_PER_ROUND))
    real=$("$MURMUR" testnet --peers "$PEERS" --dataset "$dataset" --model "$model" \
        --partition "$PARTITION" --target-accuracy "$target" --until-samples "$budget" \
        --dir "$work/real-$dataset" --json 2>/dev/null | tail -n 1)
    echo "$real" >"$work/real-$dataset.json"
    real_rounds=$(jq --argjson r $SAMPLES_PER_ROUND \
        '[.peers[] | select(.hostile == null) | .reached_target_samples // empty] |
         if length == 0 then null else (add / length / $r) end' <<<"$real")
    real_reached=$(jq '[.peers[] | select(.reached_target_samples != null)] | length' <<<"$real")
    real_all=$(jq '.all_reached_samples' <<<"$real")
    real_mean=$(jq '.mean_accuracy' <<<"$real")
    real_min=$(jq '.min_accuracy' <<<"$real")
    step_ms=$(jq '.seconds * 1000 / ([.peers[].version] | add / length) / 20' <<<"$real")
    sim_rounds=()
    sim_all=()
    sim_means=()
    for seed in $SEEDS; do
        scenario="$work/$dataset-$seed.toml"
        cat >"$scenario" <<EOF
peers = $PEERS
dataset = "$dataset"
model = "$model"
partition = "$PARTITION"
rounds = $rounds
seed = $seed
target_accuracy = $target
[compute]
step_ms = $step_ms
[eval]
every_secs = 2.0
test_samples = 0
trace_every_secs = 5.0
EOF
        sim=$("$MURMUR" sim --scenario "$scenario" --json 2>/dev/null | tail -n 1)
        echo "$sim" >"$work/sim-$dataset-$seed.json"
        sim_rounds+=("$(jq --argjson r $SAMPLES_PER_ROUND \
            'if .mean_reached_target_samples == null then "none" else
             (.mean_reached_target_samples / $r * 10 | round / 10) end' <<<"$sim")")
        sim_all+=("$(jq '.all_reached_samples' <<<"$sim")")
        sim_means+=("$(jq '.mean_accuracy * 10000 | round / 10000' <<<"$sim")")
    done
    ratios=$(for a in "${sim_all[@]}"; do
        jq -n --argjson s "$a" --argjson r "$real_all" \
            'if $s == null or $r == null then "none" else ($s / $r * 100 | round / 100) end'
    done | tr '\n' ' ')
    printf '%-14s %-5s %-6s | %-22s %-22s | %-13s %-26s %-16s | %-16s %-16s\n' "$dataset" "$model" "$target" \
        "$(jq -n "$real_rounds * 10 | round / 10" 2>/dev/null || echo none) ($real_reached/$PEERS)" \
        "${sim_rounds[*]}" \
        "$real_all" "${sim_all[*]}" "$ratios" \
        "$(jq -n "$real_mean * 10000 | round / 10000") (min $(jq -n "$real_min * 10000 | round / 10000"))" \
        "${sim_means[*]}"
    echo "SIMVSREAL dataset=$dataset step_ms=$step_ms real_rounds=$real_rounds real_all=$real_all real_mean=$real_mean sim_rounds=${sim_rounds[*]} sim_all=${sim_all[*]} sim_means=${sim_means[*]}"
done
