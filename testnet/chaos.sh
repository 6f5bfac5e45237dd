#!/usr/bin/env bash
# Faults for the docker testnet, injected from the host (nothing is needed in the image):
#   testnet/chaos.sh kill I | start I     crash peer I (docker kill) / start it again
#   testnet/chaos.sh pause I | resume I   freeze peer I (docker pause) / thaw it
#   testnet/chaos.sh cut I | reconnect I  disconnect peer I from the network / reconnect it
#                                         with its address and DNS name
#   testnet/chaos.sh split | heal         drop traffic between the two halves of the peers
#                                         (iptables in each container's network namespace,
#                                         through nsenter) / remove those rules
#   testnet/chaos.sh status               version, accuracy and merges of every peer
# Each fault prints what it did and when; watch its effect on http://127.0.0.1:8080/.
source "$(dirname "$0")/lib.sh"
N="$(peer_count)"
[ "$N" -ge 1 ] || { echo "no testnet running (start one with testnet/up.sh)" >&2; exit 1; }

need_peer() {
  [[ "${1:-}" =~ ^[0-9]+$ ]] && [ "$1" -lt "$N" ] || { echo "peer index 0..$((N - 1)) expected, got '${1:-}'" >&2; exit 2; }
}
pid_of() { docker inspect -f '{{.State.Pid}}' "$(container "$1")"; }
in_netns() { local i="$1"; shift; nsenter -t "$(pid_of "$i")" -n "$@"; }
half_a() { seq 0 $((N / 2 - 1)); }
half_b() { seq $((N / 2)) $((N - 1)); }

case "${1:-}" in
  kill) need_peer "${2:-}"; docker kill "$(container "$2")" >/dev/null; say "killed peer$2" ;;
  start|restart) need_peer "${2:-}"; docker start "$(container "$2")" >/dev/null; say "started peer$2" ;;
  pause) need_peer "${2:-}"; docker pause "$(container "$2")" >/dev/null; say "paused peer$2" ;;
  resume) need_peer "${2:-}"; docker unpause "$(container "$2")" >/dev/null; say "resumed peer$2" ;;
  cut)
    need_peer "${2:-}"
    docker network disconnect murmur-testnet "$(container "$2")"
    say "cut peer$2 off the network"
    ;;
  reconnect)
    need_peer "${2:-}"
    docker network connect --ip "$(peer_ip "$2")" --alias "peer$2" murmur-testnet "$(container "$2")"
    say "reconnected peer$2 as $(peer_ip "$2")"
    ;;
  split)
    for a in $(half_a); do
      for b in $(half_b); do
        in_netns "$a" iptables -I INPUT -s "$(peer_ip "$b")" -j DROP
        in_netns "$a" iptables -I OUTPUT -d "$(peer_ip "$b")" -j DROP
        in_netns "$b" iptables -I INPUT -s "$(peer_ip "$a")" -j DROP
        in_netns "$b" iptables -I OUTPUT -d "$(peer_ip "$a")" -j DROP
      done
    done
    say "split the network: peers $(half_a | tr '\n' ' ')| peers $(half_b | tr '\n' ' ')"
    ;;
  heal)
    for i in $(seq 0 $((N - 1))); do
      in_netns "$i" iptables -F INPUT
      in_netns "$i" iptables -F OUTPUT
    done
    say "healed the split"
    ;;
  status)
    for i in $(seq 0 $((N - 1))); do
      api "$i" /api/status | jq -r --arg i "$i" \
        '"peer\($i) version \(.version) accuracy \(.accuracy) merges \(.counters.merges) peers \(.peers | length) resumed \(.resumed)"' \
        2>/dev/null || echo "peer$i unreachable"
    done
    ;;
  *) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
