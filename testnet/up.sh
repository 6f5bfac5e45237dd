#!/usr/bin/env bash
# Builds murmur and the FROM-scratch image, generates a compose file and configs for N peers
# (default 6) and starts them:   testnet/up.sh [N]
# The first peer's dashboard is on http://127.0.0.1:8080/ (peer i on port 8080+i).
source "$(dirname "$0")/lib.sh"
N="${1:-6}"

build_image

say "generating $N peers in $RUN_DIR"
"$TESTNET_DIR/generate.sh" "$N" "$RUN_DIR" >/dev/null
compose down -v --remove-orphans >/dev/null 2>&1 || true
say "starting $N peers"
compose up -d
say "testnet up: $N peers; dashboard $(dashboard 0)/ (peer i: port 8080+i)"
say "faults: testnet/chaos.sh; stop and remove everything: testnet/down.sh"
