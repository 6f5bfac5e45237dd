#!/usr/bin/env bash
# Builds murmur and the FROM-scratch image, generates a compose file and configs for N peers
# (default 6) and starts them:   testnet/up.sh [N]
# The first peer's dashboard is on http://127.0.0.1:8080/ (peer i on port 8080+i).
source "$(dirname "$0")/lib.sh"
N="${1:-6}"

say "building murmur (release)"
(cd "$ROOT" && cargo build --release --locked -q)
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
BIN="$TARGET_DIR/release/murmur"
[ -x "$BIN" ] || { echo "no binary at $BIN" >&2; exit 1; }

say "staging the image: the binary and the libraries ldd lists"
rm -rf "$BUILD_DIR"
mkdir -p "$BUILD_DIR/rootfs"
cp "$BIN" "$BUILD_DIR/rootfs/murmur"
# Every absolute path ldd prints (libraries and the loader), copied to the same path.
for lib in $(ldd "$BIN" | grep -o '/[^ ]*'); do
  mkdir -p "$BUILD_DIR/rootfs$(dirname "$lib")"
  cp -L "$lib" "$BUILD_DIR/rootfs$lib"
done
mkdir -p "$BUILD_DIR/rootfs/data" "$BUILD_DIR/rootfs/config" "$BUILD_DIR/rootfs/tmp"
cp "$TESTNET_DIR/Dockerfile" "$BUILD_DIR/Dockerfile"

say "docker build $MURMUR_IMAGE"
DOCKER_BUILDKIT=0 docker build -q -t "$MURMUR_IMAGE" "$BUILD_DIR" >/dev/null

say "generating $N peers in $RUN_DIR"
"$TESTNET_DIR/generate.sh" "$N" "$RUN_DIR" >/dev/null
compose down -v --remove-orphans >/dev/null 2>&1 || true
say "starting $N peers"
compose up -d
say "testnet up: $N peers; dashboard $(dashboard 0)/ (peer i: port 8080+i)"
say "faults: testnet/chaos.sh; stop and remove everything: testnet/down.sh"
