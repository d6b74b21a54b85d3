"""The patch study's figures: success vs scale (a panel per source model, a line per toolkit x judging victim, the
noise control dotted), each patch as an image, and a grid of patched samples with their predictions."""

from __future__ import annotations

import numpy as np
import pandas as pd

from bridge.report.plots import png  # first: selects matplotlib's Agg backend
from bridge.studies.patch.geometry import mask

STYLE = {"bridge": "-", "art": "--"}


def curves(table: pd.DataFrame, title: str) -> bytes:
    """`table`: the ok rows of the patch table, as a PNG."""
    import matplotlib.pyplot as plt

    sources = list(dict.fromkeys(table["source"]))
    fig, axes = plt.subplots(1, len(sources), figsize=(5.2 * len(sources), 4.4), squeeze=False, sharey=True)
    for ax, source in zip(axes[0], sources, strict=True):
        mine = table[table["source"] == source]
        for (toolkit, model), line in mine.groupby(["toolkit", "model"], sort=False):
            line = line.sort_values("scale")
            ax.plot(line["scale"], line["success"], STYLE.get(toolkit, "-"), marker="o", label=f"{toolkit} → {model}")
        own = mine[mine["evaluation"] == "direct"].drop_duplicates("scale").sort_values("scale")
        ax.plot(own["scale"], own["control_success"], ":", color="grey", marker="x", label=f"noise → {source}")
        ax.set_title(f"patches made on {source}", fontsize=9)
        ax.set_xlabel("patch scale (fraction of the image)")
        ax.set_ylim(-0.04, 1.04)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper left")
    axes[0][0].set_ylabel("success rate")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return png(fig)


def _image(x: np.ndarray) -> np.ndarray:
    """(C, H, W) as something imshow takes: (H, W) for one channel, (H, W, 3) for three."""
    return x[0] if x.shape[0] == 1 else np.moveaxis(x[:3], 0, -1)


def patch_image(patch: np.ndarray, shape: str, bounds: tuple[float, float], title: str) -> bytes:
    """The patch inside its shape (outside it blank)."""
    import matplotlib.pyplot as plt

    lo, hi = bounds
    inside = mask(shape, patch.shape[-1]).numpy().astype(bool)
    shown = np.where(inside, (patch - lo) / (hi - lo), 1.0).clip(0, 1)
    fig, ax = plt.subplots(figsize=(3, 3.2))
    ax.imshow(_image(shown), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.set_title(title, fontsize=8)
    ax.axis("off")
    return png(fig)


def sample_grid(x: np.ndarray, y: np.ndarray, pred: np.ndarray, bounds: tuple[float, float], title: str) -> bytes:
    """Patched images titled `true → predicted`."""
    import matplotlib.pyplot as plt

    lo, hi = bounds
    fig, axes = plt.subplots(1, len(x), figsize=(1.6 * len(x), 2.0), squeeze=False)
    for ax, image, label, guess in zip(axes[0], x, y, pred, strict=True):
        ax.imshow(_image(((image - lo) / (hi - lo)).clip(0, 1)), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(f"{label} → {guess}", fontsize=8, color="black" if label == guess else "red")
        ax.axis("off")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return png(fig)
