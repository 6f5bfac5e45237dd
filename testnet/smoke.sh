#!/usr/bin/env bash
# The docker testnet's smoke test (run by .ci/run): builds the image, starts 5 peers on the
# digits, waits until they converge, then injects faults and checks the network survives:
#   1. kill a peer: the others keep merging;
#   2. restart it: it resumes from its checkpoint (same version counter, continuing);
#   3. split the network in two halves: both keep training;
#   4. heal: the consensus distance falls again, every peer ends within 3 points of the mean;
#   5. kill the bootstrap peer (peer0, the only one in the others' configs): the others keep
#      merging, and a late peer (`docker run` on the compose network, same image) whose config
#      names only peer1 joins: it hears the other survivors and merges.
# The peers publish int8 models (the default; MURMUR_ENCODING overrides) over the plain
# network; MURMUR_EMULATE_LINK=20mbit,40ms puts each behind an emulated link (passed 3 of 4
# runs here: once the halves took over 120 s to merge again after the heal).
# Every wait polls with a deadline. Everything is torn down even on failure; on failure the
# peers' logs are printed.
source "$(dirname "$0")/lib.sh"
N=5
VICTIM=4
T0=$(date +%s)
PHASE_T=$T0
failed=1

LATE=murmur-late
cleanup() {
  if [ "$failed" -ne 0 ] && docker inspect "$LATE" >/dev/null 2>&1; then
    echo "----- logs of the late peer (last 40 lines, then its warnings) -----"
    docker logs --tail 40 "$LATE" 2>&1 || true
    docker logs "$LATE" 2>&1 | grep -E " (WARN|ERROR) " | tail -n 40 || true
  fi
  if [ "$failed" -ne 0 ]; then
    # What each live peer knows of the others: whom it hears, is connected to, blocks and
    # charges, and how its latest averagings ended.
    for i in $(seq 0 "$N"); do
      echo "----- status of peer$i -----"
      api "$i" /api/status | jq -c '{version, accuracy, heard: [.peers[].peer_id[-6:]],
        connected: [.connected[][-6:]], blocked: [.blocked[][-6:]], error_charges,
        merges: .counters.merges, rejected: .counters.merges_rejected,
        fetch_failures: .counters.fetch_failures, adoption: (.adoption != null),
        averagings: [.averagings[-4:][] | {kind, outcome, errors: [.models[].error]}]}' \
        2>/dev/null || echo "(no answer)"
    done
  fi
  docker rm -f "$LATE" >/dev/null 2>&1 || true
  if [ "$failed" -ne 0 ] && [ -f "$RUN_DIR/docker-compose.yml" ]; then
    for i in $(seq 0 $((N - 1))); do
      echo "----- logs of peer$i (last 40 lines) -----"
      docker logs --tail 40 "$(container "$i")" 2>&1 || true
    done
  fi
  "$TESTNET_DIR/down.sh" >/dev/null 2>&1 || true
}
trap cleanup EXIT

phase() {
  local now; now=$(date +%s)
  say "phase done in $((now - PHASE_T)) s: $*"
  PHASE_T=$now
}

field() { api "$1" /api/status | jq -r "$2" 2>/dev/null; }

# Every peer up, all N in peer 0's network view, min accuracy >= $1, spread <= 3 points.
converged() {
  local net; net=$(api 0 /api/network)
  [ -n "$net" ] || return 1
  echo "$net" | jq -e --argjson n "$N" --argjson min "$1" '
    (.peers | length) == $n and
    ([.peers[].accuracy] | min) >= $min and
    (([.peers[].accuracy] | add / length) - ([.peers[].accuracy] | min)) <= 0.03 and
    (([.peers[].accuracy] | max) - ([.peers[].accuracy] | add / length)) <= 0.03' >/dev/null
}

merges_of() { field "$1" .counters.merges; }
versions() { for i in $(seq 0 $((N - 1))); do field "$i" .version; done | tr '\n' ' '; }

export MURMUR_EMULATE_LINK="${MURMUR_EMULATE_LINK:-}"
export MURMUR_ENCODING="${MURMUR_ENCODING:-int8}"
say "smoke test: $N peers on the digits (link: ${MURMUR_EMULATE_LINK:-plain}, encoding: $MURMUR_ENCODING)"
"$TESTNET_DIR/up.sh" "$N" >/dev/null
phase "built the image and started $N peers"

wait_until 180 "$N peers converged (min accuracy >= 0.90, all within 3 points)" converged 0.90
phase "converged: $(api 0 /api/network | jq -c '[.peers[].accuracy | . * 1000 | round / 1000]')"

# 1. Kill a peer: the others keep merging.
before=(); for i in $(seq 0 $((VICTIM - 1))); do before[$i]=$(merges_of "$i"); done
version_before=$(field "$VICTIM" .version)
"$TESTNET_DIR/chaos.sh" kill "$VICTIM"
others_merge() {
  for i in $(seq 0 $((VICTIM - 1))); do
    local m; m=$(merges_of "$i"); [ -n "$m" ] && [ "$m" -ge $(( ${before[$i]} + 5 )) ] || return 1
  done
}
wait_until 60 "the other peers merging without peer$VICTIM" others_merge
phase "killed peer$VICTIM (at version $version_before); the others merged 5+ times each since"

# 2. Restart it: it resumes from its checkpoint and catches up.
"$TESTNET_DIR/chaos.sh" start "$VICTIM"
resumed() {
  [ "$(field "$VICTIM" .resumed)" = "true" ] || return 1
  local v m; v=$(field "$VICTIM" .version); m=$(merges_of "$VICTIM")
  [ -n "$v" ] && [ "$v" -gt "$version_before" ] && [ -n "$m" ] && [ "$m" -ge 3 ]
}
wait_until 60 "peer$VICTIM resumed from its checkpoint and merging" resumed
phase "restarted peer$VICTIM: resumed from its checkpoint, version $(field "$VICTIM" .version) > $version_before, merging again"

# 3. Split the network: both halves keep training.
"$TESTNET_DIR/chaos.sh" split
read -r -a v0 <<< "$(versions)"
both_halves_train() {
  local v; read -r -a v <<< "$(versions)"
  [ "${#v[@]}" -eq "$N" ] || return 1
  for i in $(seq 0 $((N - 1))); do [ "${v[$i]}" -ge $(( ${v0[$i]} + 20 )) ] || return 1; done
}
wait_until 60 "both halves training" both_halves_train
sleep 45  # let the halves drift apart
phase "split: every peer trained 20+ rounds, halves apart for 45 s more"

# 4. Heal: the consensus distance (peer0's estimate) first jumps, as it hears the other half's
# current models again, then falls as the halves merge; every peer ends within 3 points of
# the mean.
"$TESTNET_DIR/chaos.sh" heal
HEALED_AT=$(date +%s)
cd_peak=0
healed() {
  local cd; cd=$(field 0 .consensus_distance)
  [ -n "$cd" ] && [ "$cd" != "null" ] || return 1
  cd_peak=$(awk -v a="$cd" -v b="$cd_peak" 'BEGIN { print (a > b ? a : b) }')
  [ $(( $(date +%s) - HEALED_AT )) -ge 10 ] || return 1
  awk -v a="$cd" -v b="$cd_peak" 'BEGIN { exit !(a < 0.6 * b) }' && converged 0.85
}
# Usually within a minute. At the heal a peer may refuse a model of the other half by the
# distance check (or find a peer of it still over budget from the split's timeouts) and block
# it for 120 s (BLOCK_FOR): the honest-refusal false alarm of the open issue on it. The wait
# covers one such block.
wait_until 250 "consensus distance falling below 0.6x its peak after the heal, every peer within 3 points" healed
phase "healed: consensus distance at peer0 peaked at $cd_peak, now $(field 0 .consensus_distance)"

say "final accuracies: $(api 0 /api/network | jq -c '[.peers[] | {peer: .peer_id[-6:], accuracy: (.accuracy * 1000 | round / 1000), version}]')"

# 5. Kill the bootstrap peer: the others keep merging with each other; a late peer that knows
# only peer1 joins.
for i in $(seq 1 $((N - 1))); do before[$i]=$(merges_of "$i"); done
boot_id=$(field 0 .peer_id)
"$TESTNET_DIR/chaos.sh" kill 0
# Each survivor merged 3+ times since, and its latest 3 averagings took models of survivors only.
survivors_merge() {
  for i in $(seq 1 $((N - 1))); do
    local m; m=$(merges_of "$i"); [ -n "$m" ] && [ "$m" -ge $(( ${before[$i]} + 3 )) ] || return 1
    api "$i" /api/status | jq -e --arg boot "$boot_id" '
      [.averagings[-3:][] | select(.outcome == "merged") | .models[] | select(.error == null)
       | .peer_id] | length > 0 and all(. != $boot)' >/dev/null || return 1
  done
}
wait_until 30 "the survivors merging without the bootstrap peer" survivors_merge
phase "killed the bootstrap peer peer0; peers 1-$((N - 1)) merged 3+ times each since"

sed -e "s|^bootstrap = .*|bootstrap = [\"/ip4/$(peer_ip 1)/tcp/4001\"]|" \
    -e "s|^shard = .*|shard = \"0/$N\"|" \
    -e "s|^# Peer .*|# The smoke test's late peer: bootstraps from peer1 only.|" \
    "$RUN_DIR/peers/peer1.toml" > "$RUN_DIR/peers/late.toml"
grep -q "$(peer_ip 1)/tcp/4001" "$RUN_DIR/peers/late.toml" || fail "late peer config: no bootstrap"
docker run -d --name "$LATE" --init --network murmur-testnet --ip "$(peer_ip "$N")" \
  -p "127.0.0.1:$((8080 + N)):8080" -e RUST_LOG=info \
  -v "$RUN_DIR/peers/late.toml:/config/peer.toml:ro" "$MURMUR_IMAGE" >/dev/null
survivor_ids=$(for i in $(seq 1 $((N - 1))); do field "$i" .peer_id; done | tr '\n' ' ')
late_joined() {
  local s; s=$(api "$N" /api/status); [ -n "$s" ] || return 1
  echo "$s" | jq -e --arg ids "$survivor_ids" '
    ($ids | split(" ") | map(select(. != ""))) as $want
    | ([.peers[].peer_id] as $heard | $want | all(. as $p | $heard | index($p)))
      and .counters.merges >= 2' >/dev/null
}
# Usually within seconds. A fresh peer races the survivors, though: until it adopts the
# network's model, its own is far from theirs, the distance check refuses it (4 charges) and
# two refusals block it for 120 s (BLOCK_FOR), the late-joiner false alarm of the open issue on
# honest refusals. Once the blocks end (charges halved and faded) it races again, so the wait
# covers one block.
wait_until 160 "the late peer (bootstrapped from peer1 only) hearing every survivor and merging" late_joined
phase "late peer joined through peer1: hears $(api "$N" /api/status | jq '.peers | length') peers, merged $(api "$N" /api/status | jq .counters.merges) times"
say "smoke test passed in $(( $(date +%s) - T0 )) s"
failed=0
