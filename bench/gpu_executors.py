"""Cells per hour on 1..N GPUs of one machine, through the Ray executor: run it where GPUs are lent.

    .venv/bin/python bench/gpu_executors.py [--gpus N] [--samples 1000] [--fractions 1,0.5]
    .venv/bin/python bench/gpu_executors.py --logical --gpus 2 --samples 64    # the same on a CPU machine

A CIFAR-shaped study (random 3x32x32 images, a ResNet-18 trained for one epoch: timing needs no accuracy) with PGD
and FGSM in the three toolkits; for each K in 1..N a fresh Ray instance sees the first K GPUs, and each cell
requests `fraction` of a GPU (0.5: two cells share one). Prints wall time, cells per hour and the speed-up over one
GPU. `--logical` gives Ray logical GPUs on a CPU-only machine: the scheduling runs, the figures mean nothing.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np


def dataset(folder: Path, samples: int) -> Path:
    rng = np.random.default_rng(0)
    path = folder / "cifar-shaped.npz"
    x = rng.integers(0, 256, (2 * samples, 32, 32, 3), dtype=np.uint8)
    y = rng.integers(0, 10, 2 * samples)
    np.savez(path, x_train=x[:samples], y_train=y[:samples], x_test=x[samples:], y_test=y[samples:])
    return path


def scenario(data: Path, samples: int, fraction: float) -> dict:
    eps = ["2/255", "4/255", "8/255"]
    return {
        "name": "gpu-scale",
        "batch_size": 256,
        "data": {"dataset": "npz", "root": str(data), "n_samples": samples},
        "model": {"arch": "resnet18", "training": {"epochs": 1, "batch_size": 256, "lr": 0.01, "seed": 0}},
        "attacks": [
            {"attack": "pgd", "norm": "linf", "eps": eps, "steps": 10, "step_size": "1/255", "random_start": False},
            {"attack": "fgsm", "norm": "linf", "eps": eps},
        ],
        "ray": {"gpus_per_cell": fraction},
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--gpus", type=int, default=None, help="up to N GPUs (default: all torch sees)")
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--fractions", default="1", help="GPU per cell, comma-separated (e.g. 1,0.5)")
    parser.add_argument("--logical", action="store_true", help="Ray logical GPUs on a CPU-only machine")
    args = parser.parse_args()
    import ray
    import torch

    from bridge.runner.study import run_scenario

    n = args.gpus or (torch.cuda.device_count() if not args.logical else 1)
    with tempfile.TemporaryDirectory() as tmp:
        os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{Path(tmp) / 'mlflow.db'}")
        os.environ.setdefault("ADVBRIDGE_CACHE", str(Path(tmp) / "cache"))
        data = dataset(Path(tmp), args.samples)
        run_scenario(scenario(data, args.samples, 0) | {"executor": "local"}, log=lambda _: None)  # trains, untimed
        print(f"{'GPUs':>4} {'GPU/cell':>8} {'cells':>5} {'wall s':>8} {'cells/h':>9} {'speed-up':>8}")
        base = None
        for fraction in (float(f) for f in args.fractions.split(",")):
            for k in range(1, n + 1):
                if not args.logical:
                    os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(map(str, range(k)))
                ray.init(num_gpus=k, num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
                try:
                    start = time.perf_counter()
                    table = run_scenario(scenario(data, args.samples, fraction), log=lambda _: None, executor="ray")
                    wall = time.perf_counter() - start
                finally:
                    ray.shutdown()
                per_hour = len(table) / wall * 3600
                base = base or per_hour
                print(f"{k:>4} {fraction:>8g} {len(table):>5} {wall:>8.1f} {per_hour:>9.0f} {per_hour / base:>8.2f}")


if __name__ == "__main__":
    main()
