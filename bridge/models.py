"""The model zoo and built-in training, cached by a hash of the model, data and training config.

The cache lives in `$ADVBRIDGE_CACHE` (default `~/.cache/advbridge/models`): a second run with the same
config loads the state dict instead of training.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from bridge.data import Dataset


def small_cnn(input_shape: tuple[int, ...], n_classes: int) -> nn.Module:
    """Two 3x3 conv layers, one 2x2 max-pool, two dense layers: ~99% clean accuracy on digits."""
    c, h, w = input_shape
    return nn.Sequential(
        nn.Conv2d(c, 32, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(32, 64, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(64 * (h // 2) * (w // 2), 128),
        nn.ReLU(),
        nn.Linear(128, n_classes),
    )


ARCHITECTURES: dict[str, Callable[[tuple[int, ...], int], nn.Module]] = {"small_cnn": small_cnn}


def cache_dir() -> Path:
    return Path(os.environ.get("ADVBRIDGE_CACHE", Path.home() / ".cache" / "advbridge")) / "models"


def config_hash(config: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16]


def train(net: nn.Module, data: Dataset, epochs: int, lr: float, batch_size: int, seed: int) -> list[float]:
    """Adam on cross-entropy; returns the mean loss per epoch."""
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    loss_fn = nn.CrossEntropyLoss()
    net.train()
    curve = []
    for _ in range(epochs):
        order = torch.randperm(len(data), generator=gen)
        total = 0.0
        for i in range(0, len(order), batch_size):
            idx = order[i : i + batch_size]
            opt.zero_grad()
            loss = loss_fn(net(data.x[idx]), data.y[idx])
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        curve.append(total / len(data))
    net.eval()
    return curve


def build_model(
    arch: str, train_data: Dataset, training: dict[str, Any], log: Callable[[str], None] = print
) -> tuple[nn.Module, dict[str, Any]]:
    """The network for `arch`, trained on `train_data` or loaded from the cache; returns it with its record."""
    config = {"arch": arch, "dataset": train_data.name, "n_train": len(train_data), **training}
    key = config_hash(config)
    path = cache_dir() / f"{arch}-{key}.pt"
    torch.manual_seed(training["seed"])
    net = ARCHITECTURES[arch](train_data.input_shape, train_data.n_classes)
    record: dict[str, Any] = {"config": config, "hash": key, "checkpoint": str(path)}
    if path.exists():
        net.load_state_dict(torch.load(path, weights_only=True))
        record["trained"] = False
    else:
        log(f"training {arch} on {train_data.name} ({training['epochs']} epochs); cached as {path.name}")
        start = time.perf_counter()
        curve = train(net, train_data, training["epochs"], training["lr"], training["batch_size"], training["seed"])
        record.update(trained=True, train_time_s=time.perf_counter() - start, loss_curve=curve)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        torch.save(net.state_dict(), tmp)
        tmp.replace(path)
    record["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    net.eval()
    return net, record
