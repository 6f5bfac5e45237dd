#!/usr/bin/env bash
# The docker testnet's smoke test (run by .ci/run): builds the image, starts 5 peers on the
# digits, waits until they converge, then injects faults and checks the network survives:
#   1. kill a peer: the others keep merging;
#   2. restart it: it resumes from its checkpoint (same version counter, continuing);
#   3. split the network in two halves: both keep training;
#   4. heal: the consensus distance falls again, every peer ends within 3 points of the mean.
# Every wait polls with a deadline. Everything is torn down even on failure; on failure the
# peers' logs are printed.
source "$(dirname "$0")/lib.sh"
N=5
VICTIM=4
T0=$(date +%s)
PHASE_T=$T0
failed=1

cleanup() {
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
fail() { say "FAILED: $*"; exit 1; }

# wait_until DEADLINE_SECS DESCRIPTION COMMAND...: polls COMMAND every second.
wait_until() {
  local deadline=$(( $(date +%s) + $1 )); local what="$2"; shift 2
  until "$@"; do
    [ "$(date +%s)" -lt "$deadline" ] || fail "timed out waiting for: $what"
    sleep 1
  done
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

say "smoke test: $N peers on the digits"
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
wait_until 120 "consensus distance falling below 0.6x its peak after the heal, every peer within 3 points" healed
phase "healed: consensus distance at peer0 peaked at $cd_peak, now $(field 0 .consensus_distance)"

say "final accuracies: $(api 0 /api/network | jq -c '[.peers[] | {peer: .peer_id[-6:], accuracy: (.accuracy * 1000 | round / 1000), version}]')"
say "smoke test passed in $(( $(date +%s) - T0 )) s"
failed=0
