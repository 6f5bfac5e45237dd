#!/usr/bin/env bash
# Stops the docker testnet and removes everything up.sh made: containers, network, volumes
# (checkpoints), the image, and the generated files.   testnet/down.sh
source "$(dirname "$0")/lib.sh"
if [ -f "$RUN_DIR/docker-compose.yml" ]; then
  say "removing containers, network and volumes"
  compose down -v --remove-orphans
fi
# Partitions leave iptables rules only inside the containers' namespaces: gone with them.
docker image rm -f "$MURMUR_IMAGE" >/dev/null 2>&1 || true
rm -rf "$RUN_DIR" "$BUILD_DIR"
say "testnet removed"
