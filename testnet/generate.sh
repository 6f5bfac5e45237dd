#!/usr/bin/env bash
# Writes a compose file and N peer configs for the docker testnet:
#   testnet/generate.sh N OUT_DIR
# OUT_DIR/docker-compose.yml and OUT_DIR/peers/peer<i>.toml. Peer i trains on shard i/N of the
# built-in digits, keeps its checkpoints in its own volume, bootstraps from peer0 by IP (the
# compose network has fixed addresses; murmur resolves no host names) and serves its
# dashboard on host port 8080+i (127.0.0.1 only). testnet/docker-compose.yml and
# testnet/peers/ are this script's output for N=6.
# MURMUR_EMULATE_LINK (e.g. 20mbit,40ms) puts every peer behind an emulated link
# (network.emulate_link, a test aid: the kernel has no netem); MURMUR_ENCODING (f32, f16,
# bf16, int8; default int8, the config default) sets averaging.encoding.
set -euo pipefail
N="${1:?usage: generate.sh N OUT_DIR}"
OUT="${2:?usage: generate.sh N OUT_DIR}"
[[ "$N" =~ ^[0-9]+$ ]] && [ "$N" -ge 2 ] && [ "$N" -le 200 ] || { echo "N must be 2..200, got $N" >&2; exit 2; }
SUBNET_PREFIX="${MURMUR_SUBNET_PREFIX:-172.31.87}"
IMAGE="${MURMUR_IMAGE:-murmur-testnet:0.1}"
PARTITION="${MURMUR_PARTITION:-dirichlet:0.5}"
LINK="${MURMUR_EMULATE_LINK:-}"
ENCODING="${MURMUR_ENCODING:-int8}"
mkdir -p "$OUT/peers"
rm -f "$OUT"/peers/peer*.toml

ip() { echo "$SUBNET_PREFIX.$((10 + $1))"; }

for i in $(seq 0 $((N - 1))); do
  if [ "$i" -eq 0 ]; then bootstrap="[]"; else bootstrap="[\"/ip4/$(ip 0)/tcp/4001\"]"; fi
  cat > "$OUT/peers/peer$i.toml" <<TOML
# Peer $i of $N of the docker testnet (written by testnet/generate.sh; see docs/config.md).
network_id = "murmur-docker"
data_dir = "/data"

[network]
listen = ["/ip4/0.0.0.0/tcp/4001"]
bootstrap = $bootstrap
mdns = false
emulate_link = "$LINK"

[training]
dataset = "digits"
partition = "$PARTITION"
shard = "$i/$N"

[averaging]
encoding = "$ENCODING"

[dashboard]
listen = "0.0.0.0:8080"
TOML
done

{
  cat <<YAML
# The docker testnet: $N murmur peers (written by testnet/generate.sh $N; start it with
# testnet/up.sh, which builds the image first). Works with docker-compose 1.29 and Compose v2.
version: "2.4"

services:
YAML
  for i in $(seq 0 $((N - 1))); do
    cat <<YAML
  peer$i:
    image: $IMAGE
    container_name: murmur-peer$i
    init: true
    environment:
      RUST_LOG: "\${RUST_LOG:-info}"
    volumes:
      - ./peers/peer$i.toml:/config/peer.toml:ro
      - peer$i-data:/data
    ports:
      - "127.0.0.1:$((8080 + i)):8080"
    networks:
      murmur:
        ipv4_address: $(ip "$i")
YAML
    if [ "$i" -gt 0 ]; then
      cat <<YAML
    depends_on:
      - peer0
YAML
    fi
  done
  cat <<YAML

networks:
  murmur:
    name: murmur-testnet
    ipam:
      config:
        - subnet: $SUBNET_PREFIX.0/24

volumes:
YAML
  for i in $(seq 0 $((N - 1))); do
    echo "  peer$i-data:"
  done
} > "$OUT/docker-compose.yml"
echo "wrote $OUT/docker-compose.yml and $N configs in $OUT/peers/"
