"""Datasets: sklearn's bundled digits (8x8, real, no download) is the embedded default.

Selection is deterministic: a fixed stratified train/test split (independent of the scenario seed, so a
model never sees its test samples), then `n_samples` drawn from the split with the scenario seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

SPLIT_SEED = 0  # the train/test split never moves with the scenario seed
DATASETS = {"digits": "sklearn's bundled 8x8 handwritten digits (1797 images, 10 classes), scaled to [0,1]"}


@dataclass
class Dataset:
    """Inputs in `bounds`, NCHW float32, with integer labels."""

    name: str
    x: torch.Tensor
    y: torch.Tensor
    n_classes: int
    bounds: tuple[float, float] = (0.0, 1.0)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x.shape[1:])

    def __len__(self) -> int:
        return len(self.y)


def _digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = (bunch.images / 16.0).astype(np.float32)[:, None, :, :]
    return x, bunch.target.astype(np.int64)


def load_split(dataset: str, split: str) -> Dataset:
    """The whole train or test split of `dataset`."""
    from sklearn.model_selection import train_test_split

    x, y = _digits()
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.3, stratify=y, random_state=SPLIT_SEED)
    xs, ys = (x_tr, y_tr) if split == "train" else (x_te, y_te)
    return Dataset(dataset, torch.from_numpy(xs), torch.from_numpy(ys), n_classes=10)


def select(data: Dataset, n_samples: int | None, seed: int) -> Dataset:
    """`n_samples` drawn without replacement with `seed`, kept in split order; all when None."""
    if n_samples is None or n_samples >= len(data):
        return data
    idx = np.sort(np.random.default_rng(seed).choice(len(data), size=n_samples, replace=False))
    index = torch.from_numpy(idx)
    return Dataset(data.name, data.x[index], data.y[index], data.n_classes, data.bounds)


def n_classes(dataset: str) -> int:
    """Class count without loading the data (validation needs it before anything runs)."""
    return {"digits": 10}[dataset]
