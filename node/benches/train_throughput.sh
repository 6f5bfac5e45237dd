#!/usr/bin/env bash
# Training throughput (samples/s, one thread) of murmur's candle models against the same
# models trained by PyTorch on CPU, on this machine, in one run; prints the murmur/pytorch ratio.
#
#   node/benches/train_throughput.sh [--epochs N] [--models mlp,cnn] [other pytorch_baseline.py flags]
#
# Creates a PyTorch venv in $TORCH_VENV (default /var/tmp/murmur-torch-venv, outside the repo)
# if missing, builds murmur in release into $CARGO_TARGET_DIR (default /var/tmp/murmur-target),
# then runs pytorch_baseline.py. Needs Fashion-MNIST (apt-get install dataset-fashion-mnist).
#
# PyPI only has CUDA builds of torch for Linux x86_64, and `import torch` needs the CUDA
# libraries it links against even on CPU; so torch is installed with --no-deps plus only those
# libraries (not triton, cusolver, cuda-bindings, ...): a venv of about 4 GB.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
venv="${TORCH_VENV:-/var/tmp/murmur-torch-venv}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/murmur-target}"

# (a) The PyTorch venv, pinned to the versions that were tested together.
if ! "$venv/bin/python" -c 'import torch, numpy' 2>/dev/null; then
    echo "setting up PyTorch (CPU use) in $venv ..." >&2
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet filelock typing-extensions sympy networkx jinja2 fsspec "setuptools>=77.0.3" numpy
    "$venv/bin/pip" install --quiet --no-deps torch==2.15.0 \
        nvidia-cuda-runtime==13.2.86 nvidia-cuda-cupti==13.2.86 nvidia-cuda-nvrtc==13.2.86 \
        nvidia-cublas==13.4.1.3 nvidia-cufft==12.2.0.57 nvidia-cufile==1.17.1.22 \
        nvidia-cusparse==12.7.10.12 nvidia-nvjitlink==13.5.37 nvidia-cudnn-cu13==9.26.0.51 \
        nvidia-cusparselt-cu13==0.8.1 nvidia-nccl-cu13==2.30.7 nvidia-nvshmem-cu13==3.7.2
    "$venv/bin/python" -c 'import torch; print("torch", torch.__version__, file=__import__("sys").stderr)'
fi

# (b) murmur, release build.
cargo build --release -p murmur-node --manifest-path "$repo/Cargo.toml"

# (c) Both trainings, interleaved per model, in one script.
exec "$venv/bin/python" "$here/pytorch_baseline.py" --murmur "$CARGO_TARGET_DIR/release/murmur" "$@"
