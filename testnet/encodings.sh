#!/usr/bin/env bash
# What each model encoding costs and buys, side by side in one script: N real peer processes
# (murmur testnet; default 8 peers, Fashion-MNIST, MLP, Dirichlet 0.5) train to the same
# sample budget once per encoding on the plain loopback and once per encoding with every
# peer behind an emulated link (default 20 Mbit/s and 40 ms one-way, `--emulate-link`).
# For each run it prints:
#   - bytes per peer to target: what each peer had received over the sync protocol when it
#     first reported the target accuracy (mean over the peers that reached it), and the
#     ratio to the first encoding's on the same link;
#   - accuracy: the peers' mean final accuracy at the budget;
#   - time to target: seconds until the last peer first reported the target, and the ratio
#     to the same encoding's on loopback;
#   - communication overhead and resource utilization: each peer's share of its process CPU
#     time spent communicating and training (docs/api.md), mean over the peers.
#
#   testnet/encodings.sh
#   ENCODINGS="f32 int8" LINK=10mbit,80ms testnet/encodings.sh
#
# Environment: MURMUR (default target/release/murmur), PEERS (8), DATASET (fashion-mnist),
# MODEL (mlp), PARTITION (dirichlet:0.5), TARGET (0.85), ROUNDS (150; the budget is ROUNDS x
# 1,000 samples per peer), LINK (20mbit,40ms), ENCODINGS ("f32 f16 bf16 int8"), EXTRA (more
# `murmur testnet` flags for every run, e.g. "--round-steps 100").
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
MURMUR=${MURMUR:-$here/../target/release/murmur}
PEERS=${PEERS:-8}
DATASET=${DATASET:-fashion-mnist}
MODEL=${MODEL:-mlp}
PARTITION=${PARTITION:-dirichlet:0.5}
TARGET=${TARGET:-0.85}
ROUNDS=${ROUNDS:-150}
LINK=${LINK:-20mbit,40ms}
ENCODINGS=${ENCODINGS:-f32 f16 bf16 int8}
EXTRA=${EXTRA:-}
budget=$((ROUNDS * 1000))
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

run() { # name encoding link-or-empty
    local name=$1 encoding=$2 link=$3
    local args=(testnet --peers "$PEERS" --dataset "$DATASET" --model "$MODEL"
        --partition "$PARTITION" --target-accuracy "$TARGET" --until-samples "$budget"
        --encoding "$encoding" --dir "$work/$name" --json)
    [ -n "$link" ] && args+=(--emulate-link "$link")
    # shellcheck disable=SC2206 # EXTRA is a list of flags
    [ -n "$EXTRA" ] && args+=($EXTRA)
    "$MURMUR" "${args[@]}" 2>/dev/null | tail -n 1 >"$work/$name.json"
}

summary() { # file -> "bytes reached acc time overhead utilization"
    jq -r '[
        ([.peers[] | .reached_target_bytes // empty] | if length == 0 then null else add / length end),
        ([.peers[] | select(.reached_target_bytes != null)] | length),
        .mean_accuracy,
        .each_reached_secs,
        ([.peers[] | .communication_overhead // empty] | if length == 0 then null else add / length end),
        ([.peers[] | .resource_utilization // empty] | if length == 0 then null else add / length end)
    ] | map(tostring) | join(" ")' "$1"
}

echo "$PEERS peers, $DATASET $MODEL, $PARTITION, target $TARGET, budget $budget samples per peer${EXTRA:+, $EXTRA}"
rows=()
for link in loopback "$LINK"; do
    first_bytes=
    for enc in $ENCODINGS; do
        name="$enc-${link//[,]/_}"
        run "$name" "$enc" "$([ "$link" = loopback ] || echo "$link")"
        read -r bytes reached acc time overhead util <<<"$(summary "$work/$name.json")"
        [ -z "$first_bytes" ] && first_bytes=$bytes
        base_time=$time
        if [ "$link" != loopback ]; then
            read -r _ _ _ base_time _ _ <<<"$(summary "$work/$enc-loopback.json")"
        fi
        rows+=("$enc $link $bytes $first_bytes $reached $acc $time $base_time $overhead $util")
    done
done

printf '%-6s %-12s | %-9s %-7s %-7s | %-8s | %-8s %-6s | %-8s %-11s\n' encoding link \
    "MB/peer" "x first" reached accuracy "time (s)" "x loop" overhead utilization
fmt() { jq -n "$1" 2>/dev/null | tr -d '"' || echo "-"; }
for row in "${rows[@]}"; do
    read -r enc link bytes first reached acc time base_time overhead util <<<"$row"
    printf '%-6s %-12s | %-9s %-7s %-7s | %-8s | %-8s %-6s | %-8s %-11s\n' "$enc" "$link" \
        "$(fmt "if $bytes == null then \"none\" else ($bytes / 1e6 * 10 | round / 10) end")" \
        "$(fmt "if $bytes == null or $first == null then \"-\" else ($bytes / $first * 1000 | round / 1000) end")" \
        "$reached/$PEERS" \
        "$(fmt "$acc * 10000 | round / 10000")" \
        "$(fmt "if $time == null then \"none\" else ($time * 10 | round / 10) end")" \
        "$(fmt "if $time == null or $base_time == null then \"-\" else ($time / $base_time * 100 | round / 100) end")" \
        "$(fmt "if $overhead == null then \"-\" else ($overhead * 1000 | round / 10 | tostring) + \"%\" end")" \
        "$(fmt "if $util == null then \"-\" else ($util * 1000 | round / 10 | tostring) + \"%\" end")"
    echo "ENCODINGS encoding=$enc link=$link bytes=$bytes reached=$reached accuracy=$acc time=$time loopback_time=$base_time overhead=$overhead utilization=$util" >&2
done
