"""The extraction's own data: the query pool and the out-of-distribution set, each a seeded selection of a split
with a deterministic transform, loaded once per process."""

from __future__ import annotations

import functools
import json

import numpy as np
import torch

from bridge.data.dataset import Dataset, load_split, select
from bridge.studies.extraction.config import Source

PERMUTATION_SEED = 0  # shuffle_pixels: one permutation for every study, whatever its seed


def transform(data: Dataset, kind: str) -> Dataset:
    """`data` with `kind` applied to every image (config.TRANSFORMS); labels kept, named `<name>[<kind>]`."""
    if kind == "none":
        return data
    lo, hi = data.bounds
    if kind == "invert":
        x = lo + hi - data.x
    elif kind == "shuffle_pixels":
        n, c, h, w = data.x.shape
        order = torch.from_numpy(np.random.default_rng(PERMUTATION_SEED).permutation(h * w))
        x = data.x.reshape(n, c, h * w)[:, :, order].reshape(n, c, h, w)
    else:
        raise ValueError(f"unknown transform {kind!r}")
    return Dataset(f"{data.name}[{kind}]", x.contiguous(), data.y, data.n_classes, data.bounds)


@functools.lru_cache(maxsize=4)
def _load(source: str, seed: int) -> Dataset:
    cfg = Source.model_validate_json(source)
    data = select(load_split(cfg, log=lambda _: None), cfg.n_samples, seed, balanced=cfg.balanced)
    return transform(data, cfg.transform)


def source_set(cfg: Source | dict, seed: int) -> Dataset:
    """The data set `cfg` describes (a Source or its JSON dump), selected with `seed`."""
    cfg = cfg if isinstance(cfg, Source) else Source.model_validate(cfg)
    return _load(json.dumps(cfg.model_dump(mode="json"), sort_keys=True), seed)
