"""Backdoor triggers placed by the bridge on NCHW batches (any number of channels): the same pixels in every channel.

ART's `add_single_bd` has no `channels_first` (on NCHW it writes a whole row of one channel) and `add_pattern_bd`
needs it set, so the bridge places its triggers itself, with ART's geometry: `distance` counts from the
bottom-right corner as ART's does (row H - distance, column W - distance).

- pixel: that one pixel.
- pattern: ART's 4-pixel checker: (H-d, W-d), (H-d-1, W-d-1), (H-d, W-d-2), (H-d-2, W-d).
- image: a `size` x `size` image whose bottom-right pixel is (H-d, W-d), blended in: (1 - blend) x + blend image.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch


def positions(kind: str, height: int, width: int, distance: int, size: int = 1) -> list[tuple[int, int]]:
    """The (row, column) pairs the trigger writes, in every channel."""
    r, c = height - distance, width - distance
    if kind == "pixel":
        cells = [(r, c)]
    elif kind == "pattern":
        cells = [(r, c), (r - 1, c - 1), (r, c - 2), (r - 2, c)]
    else:
        cells = [(r - i, c - j) for i in range(size) for j in range(size)]
    if any(not (0 <= i < height and 0 <= j < width) for i, j in cells):
        raise ValueError(f"a {kind} trigger at distance {distance} (size {size}) does not fit {height}x{width} inputs")
    return sorted(cells)


def read_image(path: Path, channels: int, size: int, bounds: tuple[float, float]) -> torch.Tensor:
    """The trigger image (C, size, size) in `bounds`: read, resized (nearest), grey or RGB as the inputs are."""
    from PIL import Image

    image = Image.open(path).convert("L" if channels == 1 else "RGB").resize((size, size), Image.Resampling.NEAREST)
    a = np.asarray(image, dtype=np.float32) / 255.0
    a = a[None] if a.ndim == 2 else a.transpose(2, 0, 1)
    if a.shape[0] != channels:
        raise ValueError(f"an image trigger needs 1- or 3-channel inputs; the inputs have {channels}")
    lo, hi = bounds
    return torch.from_numpy(a * (hi - lo) + lo)


def apply(x: torch.Tensor, trigger: dict, bounds: tuple[float, float]) -> torch.Tensor:
    """`x` (N, C, H, W) with the trigger (`Trigger.model_dump()`) placed; a new tensor."""
    if x.ndim != 4:
        raise ValueError(f"triggers are placed on NCHW batches; got shape {tuple(x.shape)}")
    _, channels, height, width = x.shape
    kind, distance = trigger["trigger"], trigger["distance"]
    value = bounds[1] if trigger["value"] is None else trigger["value"]
    out = x.clone()
    if kind != "image":
        rows, cols = zip(*positions(kind, height, width, distance), strict=True)
        out[:, :, list(rows), list(cols)] = value
        return out
    size = trigger["size"]
    positions(kind, height, width, distance, size)  # refuses a trigger that does not fit
    image = read_image(Path(trigger["image"]), channels, size, bounds).to(x)
    top, left = height - distance - size + 1, width - distance - size + 1
    patch = out[:, :, top : top + size, left : left + size]
    out[:, :, top : top + size, left : left + size] = (1 - trigger["blend"]) * patch + trigger["blend"] * image
    return out


def apply_numpy(x: np.ndarray, trigger: dict, bounds: tuple[float, float]) -> np.ndarray:
    """`apply` for ART's `PoisoningAttackBackdoor` (which hands NumPy arrays to its perturbation)."""
    return apply(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)), trigger, bounds).numpy()
