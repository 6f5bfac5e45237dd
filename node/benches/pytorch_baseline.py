#!/usr/bin/env python3
"""Training throughput of murmur (candle) against PyTorch on CPU, one thread each.

For each model (mlp = FedAvg 2NN, cnn = FedAvg CNN), in turn: runs `murmur train` on
Fashion-MNIST with one thread and reads its JSON report, then trains the same model the same
way in PyTorch (same data, batch 50, SGD lr 0.05 momentum 0.9, reshuffled each epoch) in this
process. samples/s counts training steps only (batch gathering, forward, backward, update and
reading the loss, as murmur does); evaluation is excluded. Prints a table, then one JSON line.

Run it through node/benches/train_throughput.sh (builds murmur, sets up the venv), or:
    python pytorch_baseline.py --murmur target/release/murmur [--models mlp,cnn] [--epochs 1]
    python pytorch_baseline.py --torch-only --models mlp      # the PyTorch half alone
"""
import argparse
import gzip
import json
import os
import struct
import subprocess
import sys
import time

import numpy as np
import torch
from torch import nn

BATCH, LR, MOMENTUM, SEED = 50, 0.05, 0.9, 1
PARAMS = {"mlp": 199_210, "cnn": 1_663_370}  # murmur's parameter counts


def read_idx(path):
    """A gzipped IDX file as a numpy array (uint8 images [n, rows, cols] or labels [n])."""
    with gzip.open(path, "rb") as f:
        magic, n = struct.unpack(">II", f.read(8))
        dims = [n] + list(struct.unpack(">" + "I" * ((magic & 0xFF) - 1), f.read(4 * ((magic & 0xFF) - 1))))
        return np.frombuffer(f.read(), dtype=np.uint8).reshape(dims)


def load_split(data_dir, prefix):
    x = read_idx(os.path.join(data_dir, f"{prefix}-images-idx3-ubyte.gz"))
    y = read_idx(os.path.join(data_dir, f"{prefix}-labels-idx1-ubyte.gz"))
    x = torch.from_numpy(x.reshape(len(x), -1).astype(np.float32) / 255.0)
    return x, torch.from_numpy(y.astype(np.int64))


def build(model):
    if model == "mlp":
        return nn.Sequential(nn.Linear(784, 200), nn.ReLU(), nn.Linear(200, 200), nn.ReLU(), nn.Linear(200, 10))
    if model == "cnn":
        return nn.Sequential(
            nn.Unflatten(1, (1, 28, 28)),
            nn.Conv2d(1, 32, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(3136, 512), nn.ReLU(), nn.Linear(512, 10),
        )
    raise SystemExit(f"unknown model {model!r}")


def run_torch(model, epochs, train, test):
    torch.manual_seed(SEED)
    net = build(model)
    params = sum(p.numel() for p in net.parameters())
    assert params == PARAMS[model], f"{model}: pytorch has {params} params, murmur {PARAMS[model]}"
    opt = torch.optim.SGD(net.parameters(), lr=LR, momentum=MOMENTUM)
    loss_fn = nn.CrossEntropyLoss()
    (xs, ys), n = train, len(train[0])
    gen = torch.Generator().manual_seed(SEED)
    train_seconds = 0.0
    for _ in range(epochs):
        order = torch.randperm(n, generator=gen)  # reshuffled each epoch, untimed like murmur's
        net.train()
        t = time.perf_counter()
        for i in range(0, n, BATCH):  # the last batch may be partial, as in murmur
            idx = order[i:i + BATCH]
            loss = loss_fn(net(xs[idx]), ys[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss.item()  # murmur reads every step's loss too
        train_seconds += time.perf_counter() - t
    net.eval()
    with torch.no_grad():
        correct = sum((net(test[0][i:i + 1000]).argmax(1) == test[1][i:i + 1000]).sum().item()
                      for i in range(0, len(test[0]), 1000))
    return {"samples_per_sec": n * epochs / train_seconds, "accuracy": correct / len(test[0]),
            "train_seconds": train_seconds, "params": params}


def run_murmur(binary, model, epochs, data_dir):
    cmd = [binary, "train", "--dataset", "fashion-mnist", "--data-dir", data_dir, "--model", model,
           "--epochs", str(epochs), "--threads", "1", "--optimizer", "sgd", "--lr", str(LR),
           "--momentum", str(MOMENTUM), "--schedule", "constant", "--batch-size", str(BATCH), "--json"]
    out = subprocess.run(cmd, env={**os.environ, "RAYON_NUM_THREADS": "1"}, stdout=subprocess.PIPE,
                         text=True, check=True).stdout
    report = json.loads(out.strip().splitlines()[-1])
    assert report["params"] == PARAMS[model], f"{model}: murmur has {report['params']} params, expected {PARAMS[model]}"
    return report


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--murmur", help="path to the murmur binary")
    ap.add_argument("--models", default="mlp,cnn")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--data-dir", default="/usr/share/datasets/fashion-mnist")
    ap.add_argument("--torch-only", action="store_true", help="skip murmur, time PyTorch alone")
    args = ap.parse_args()
    if not args.torch_only and not args.murmur:
        ap.error("--murmur PATH is required (or --torch-only)")
    torch.set_num_threads(1)
    torch.set_num_interop_threads(1)
    train, test = load_split(args.data_dir, "train"), load_split(args.data_dir, "t10k")

    rows = []
    for model in args.models.split(","):
        m = None if args.torch_only else run_murmur(args.murmur, model, args.epochs, args.data_dir)
        t = run_torch(model, args.epochs, train, test)
        rows.append({"model": model, "epochs": args.epochs, "params": t["params"],
                     "murmur_samples_per_sec": m and m["samples_per_sec"],
                     "pytorch_samples_per_sec": t["samples_per_sec"],
                     "ratio_murmur_over_pytorch": m and m["samples_per_sec"] / t["samples_per_sec"],
                     "murmur_accuracy": m and m["accuracy"], "pytorch_accuracy": t["accuracy"]})
        print(f"{model}: done", file=sys.stderr, flush=True)

    fmt = lambda v, spec: "-".rjust(int(spec.split(".")[0])) if v is None else format(v, spec)
    print(f"torch {torch.__version__}, 1 thread, {args.epochs} epoch(s), batch {BATCH}, SGD lr {LR} momentum {MOMENTUM}")
    print(f"{'model':<6} {'murmur samples/s':>17} {'pytorch samples/s':>18} {'murmur/pytorch':>15} {'murmur acc':>11} {'pytorch acc':>12}")
    for r in rows:
        print(f"{r['model']:<6} {fmt(r['murmur_samples_per_sec'], '17.0f')} {r['pytorch_samples_per_sec']:18.0f} "
              f"{fmt(r['ratio_murmur_over_pytorch'], '15.2f')} {fmt(r['murmur_accuracy'], '11.4f')} {r['pytorch_accuracy']:12.4f}")
    print(json.dumps({"torch": torch.__version__, "threads": 1, "results": rows}))


if __name__ == "__main__":
    main()
