# Shared by the testnet scripts (sourced, not run).
set -euo pipefail
TESTNET_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$TESTNET_DIR/.." && pwd)"
RUN_DIR="$TESTNET_DIR/.run"      # generated compose file and configs (git-ignored)
BUILD_DIR="$TESTNET_DIR/.build"  # the image's build context (git-ignored)
export MURMUR_IMAGE="${MURMUR_IMAGE:-murmur-testnet:0.1}"
PROJECT=murmur-testnet

say() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*"; }
fail() { say "FAILED: $*"; exit 1; }

# wait_until DEADLINE_SECS DESCRIPTION COMMAND...: polls COMMAND every POLL_SECS (default 1)
# until it succeeds; fails the script, naming DESCRIPTION, after DEADLINE_SECS.
wait_until() {
  local deadline=$(( $(date +%s) + $1 )); local what="$2"; shift 2
  until "$@"; do
    [ "$(date +%s)" -lt "$deadline" ] || fail "timed out waiting for: $what"
    sleep "${POLL_SECS:-1}"
  done
}

compose() {
  if command -v docker-compose >/dev/null 2>&1; then
    docker-compose -p "$PROJECT" -f "$RUN_DIR/docker-compose.yml" "$@"
  else
    docker compose -p "$PROJECT" -f "$RUN_DIR/docker-compose.yml" "$@"
  fi
}

# Number of peers of the running testnet (from its generated compose file).
peer_count() { ls "$RUN_DIR"/peers/peer*.toml 2>/dev/null | wc -l; }

container() { echo "murmur-peer$1"; }
peer_ip() { echo "${MURMUR_SUBNET_PREFIX:-172.31.87}.$((10 + $1))"; }
dashboard() { echo "http://127.0.0.1:$((8080 + $1))"; }

# GET a JSON path of peer $1's API (empty output if unreachable).
api() { curl -fsS --max-time 3 "$(dashboard "$1")$2" 2>/dev/null || true; }

# fmnist_scenario PARTITION ROUNDS SEED: on stdout, the head of a simulator scenario shared by
# the ablation scripts (8 Fashion-MNIST peers, MLP, target 85%); callers append their tables.
fmnist_scenario() {
  cat <<EOT
peers = 8
dataset = "fashion-mnist"
model = "mlp"
partition = "$1"
rounds = $2
seed = $3
target_accuracy = 0.85
EOT
}

# build_image: builds murmur (release) and the FROM-scratch image $MURMUR_IMAGE from it: the
# binary and the shared libraries ldd lists for it, loader included, at their usual paths.
build_image() {
  say "building murmur (release)"
  (cd "$ROOT" && cargo build --release --locked -q)
  local target_dir="${CARGO_TARGET_DIR:-$ROOT/target}"
  local bin="$target_dir/release/murmur"
  [ -x "$bin" ] || { echo "no binary at $bin" >&2; exit 1; }
  say "staging the image: the binary and the libraries ldd lists"
  rm -rf "$BUILD_DIR"
  mkdir -p "$BUILD_DIR/rootfs"
  cp "$bin" "$BUILD_DIR/rootfs/murmur"
  local lib
  for lib in $(ldd "$bin" | grep -o '/[^ ]*'); do
    mkdir -p "$BUILD_DIR/rootfs$(dirname "$lib")"
    cp -L "$lib" "$BUILD_DIR/rootfs$lib"
  done
  mkdir -p "$BUILD_DIR/rootfs/data" "$BUILD_DIR/rootfs/config" "$BUILD_DIR/rootfs/tmp"
  cp "$TESTNET_DIR/Dockerfile" "$BUILD_DIR/Dockerfile"
  say "docker build $MURMUR_IMAGE"
  DOCKER_BUILDKIT=0 docker build -q -t "$MURMUR_IMAGE" "$BUILD_DIR" >/dev/null
}
