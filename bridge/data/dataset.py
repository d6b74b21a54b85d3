"""Datasets as NCHW float32 tensors in `bounds`: whole splits, and the seeded selection a study evaluates on.

digits (sklearn's bundled 8x8 digits, no download) is the default. MNIST, Fashion-MNIST and CIFAR-10/100 are read
from their canonical distribution files (fetched and md5-checked on request); your own data comes from an image
folder or an .npz file. Splits never move with the scenario seed, so a model never sees its test samples; `select`
then draws `n_samples` from the split with that seed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from bridge.data.config import FIXED_CLASSES, DataConfig, DatasetError, as_config
from bridge.data.files import data_root, download, image_layout, missing, npz_file
from bridge.data.readers import READERS, npz_arrays


@dataclass
class Dataset:
    """Inputs in `bounds`, NCHW float32, with integer labels; `fingerprint` identifies the exact samples."""

    name: str
    x: torch.Tensor
    y: torch.Tensor
    n_classes: int
    bounds: tuple[float, float] = (0.0, 1.0)
    fingerprint: str = ""  # a short hash of the exact samples (x, y) and bounds, computed when left empty

    def __post_init__(self) -> None:
        if not self.fingerprint:
            header = (str(self.x.dtype), tuple(self.x.shape), tuple(map(float, self.bounds)))
            digest = hashlib.sha256(repr(header).encode())
            digest.update(self.x.detach().cpu().contiguous().numpy().data)
            digest.update(self.y.cpu().to(torch.int64).contiguous().numpy().data)
            self.fingerprint = digest.hexdigest()[:16]

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x.shape[1:])

    def __len__(self) -> int:
        return len(self.y)


def load_split(cfg: DataConfig | str, split: str | None = None, log: Callable[[str], None] = print) -> Dataset:
    """The whole train or test split (default `cfg.split`), downloading it first when `cfg.download` asks.

    A dataset name stands for its default config. Raises `DatasetError` when the data is missing or malformed.
    """
    cfg = as_config(cfg)
    split = split or cfg.split
    if split not in ("train", "test"):
        raise ValueError(f"split must be train or test (got {split!r})")
    if cfg.download:
        download(cfg, log)
    if problem := missing(cfg):
        raise DatasetError(problem)
    x, y = READERS[cfg.dataset](cfg, split)
    k = n_classes(cfg)
    if len(y) and y.max() >= k:
        raise DatasetError(f"{cfg.dataset}: label {y.max()} in the {split} split, but the dataset has {k} classes")
    lo, hi = cfg.bounds
    scaled = np.divide(x, 255, dtype=np.float32) if x.dtype == np.uint8 else x.astype(np.float32)
    if (lo, hi) != (0.0, 1.0):
        scaled *= hi - lo
        scaled += lo
    return Dataset(cfg.dataset, torch.from_numpy(scaled), torch.from_numpy(y), k, (lo, hi))


def select(data: Dataset, n_samples: int | None, seed: int, balanced: bool = False) -> Dataset:
    """`n_samples` drawn without replacement with `seed`, kept in split order; all when None.

    `balanced` takes the classes round-robin (each class's samples in a seeded order), so class counts differ by at
    most one until a class runs out.
    """
    if n_samples is not None and n_samples > len(data):
        raise DatasetError(
            f"data.n_samples: {n_samples} is more than the {len(data)} samples of the {data.name} split evaluated; "
            f"at most {len(data)}, or n_samples: all"
        )
    if n_samples is None or n_samples == len(data):
        return data
    rng = np.random.default_rng(seed)
    if balanced:
        y = data.y.cpu().numpy()
        classes = rng.permutation(np.unique(y))
        turn = np.empty(len(y), dtype=np.int64)  # the position of each sample in the round-robin
        for pos, c in enumerate(classes):
            members = rng.permutation(np.flatnonzero(y == c))
            turn[members] = np.arange(len(members)) * len(classes) + pos
        idx = np.sort(np.argsort(turn)[:n_samples])
    else:
        idx = np.sort(rng.choice(len(data), size=n_samples, replace=False))
    index = torch.from_numpy(idx)
    return Dataset(data.name, data.x[index], data.y[index], data.n_classes, data.bounds)


def n_classes(cfg: DataConfig | str) -> int:
    """The class count without loading the images (validation needs it before anything runs)."""
    cfg = as_config(cfg)
    if cfg.dataset in FIXED_CLASSES:
        return FIXED_CLASSES[cfg.dataset]
    if problem := missing(cfg):
        raise DatasetError(problem)
    root = data_root(cfg)
    if cfg.dataset == "image_folder":
        return len(image_layout(root)[1])
    return int(npz_arrays(npz_file(root), cfg.split, cfg.test_fraction, labels_only=True)["y"].max()) + 1
