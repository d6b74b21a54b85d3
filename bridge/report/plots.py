"""Figures logged to MLflow: a sample grid per cell, robust accuracy vs eps per attack, the defence trade-off."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402


def _hwc(t: torch.Tensor) -> np.ndarray:
    """NCHW -> NHWC with 3 channels (grayscale repeated), for one RGB mosaic."""
    a = t.detach().cpu().float().numpy().transpose(0, 2, 3, 1)
    return np.repeat(a, 3, axis=3) if a.shape[3] == 1 else a


def sample_grid(
    x: torch.Tensor,
    x_adv: torch.Tensor,
    y: torch.Tensor,
    clean_pred: torch.Tensor,
    adv_pred: torch.Tensor,
    bounds: tuple[float, float],
    n: int = 8,
) -> Figure:
    """Rows: clean (label, prediction), adversarial (prediction, red when fooled), perturbation amplified.

    Drawn as one mosaic on one axes: a figure of many small axes costs seconds per cell to lay out.
    """
    n = min(n, len(x))
    lo, hi = bounds
    clean = (_hwc(x[:n]) - lo) / (hi - lo)
    adv = (_hwc(x_adv[:n]) - lo) / (hi - lo)
    delta = _hwc(x_adv[:n] - x[:n])
    scale = np.abs(delta).reshape(n, -1).max(1).clip(min=1e-12)[:, None, None, None]
    amplified = 0.5 + 0.5 * delta / scale
    h, w = clean.shape[1:3]
    pad = max(1, h // 8)
    mosaic = np.ones((3 * (h + pad) + pad, n * (w + pad) + pad, 3))
    for i, row in enumerate((clean, adv, amplified)):
        for j in range(n):
            top, left = pad + i * (h + pad), pad + j * (w + pad)
            mosaic[top : top + h, left : left + w] = row[j].clip(0, 1)
    fig, ax = plt.subplots(figsize=(1.1 * n + 1.2, 4.0))
    ax.imshow(mosaic, interpolation="nearest")
    ax.set_xticks([pad + j * (w + pad) + w / 2 for j in range(n)])
    ax.set_xticklabels([f"y={int(y[j])}" for j in range(n)], fontsize=7)
    ax.set_yticks([pad + i * (h + pad) + h / 2 for i in range(3)])
    ax.set_yticklabels(["clean", "adversarial", "perturbation"], fontsize=8)
    ax.tick_params(length=0)
    for j in range(n):
        left = pad + j * (w + pad)
        fooled = int(adv_pred[j]) != int(y[j])
        ax.text(left, pad - 0.6, f"p={int(clean_pred[j])}", fontsize=6, va="bottom")
        ax.text(
            left,
            2 * pad + h - 0.6,
            f"p={int(adv_pred[j])}",
            fontsize=6,
            va="bottom",
            color="red" if fooled else "black",
        )
        amp = 0.5 / float(scale[j, 0, 0, 0])
        ax.text(left, 3 * pad + 2 * h - 0.6, f"x{amp:.0f}" if amp < 1e11 else "none", fontsize=6, va="bottom")
    ax.set_title("p = prediction; perturbation amplified to the full range", fontsize=8)
    return fig


def robustness_curve(table: pd.DataFrame, title: str) -> Figure:
    """Robust accuracy vs eps, one line per toolkit, starting from clean accuracy at eps = 0."""
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for toolkit, rows in table.groupby("toolkit"):
        rows = rows.sort_values("eps")
        eps = np.concatenate([[0.0], rows["eps"].to_numpy(float)])
        acc = np.concatenate([[rows["clean_accuracy"].iloc[0]], rows["robust_accuracy"].to_numpy(float)])
        ax.plot(eps, acc, marker="o", label=str(toolkit))
    ax.set_xlabel("eps")
    ax.set_ylabel("robust accuracy")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return fig


def security_curve(curves: pd.DataFrame, title: str) -> Figure:
    """Robust accuracy vs eps computed from a minimum-norm attack's per-sample distances, one line per toolkit."""
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for toolkit, rows in curves.groupby("toolkit"):
        ax.step(rows["eps"], rows["robust_accuracy"], where="post", label=str(toolkit))
    ax.set_xlabel("eps")
    ax.set_ylabel("robust accuracy")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return fig


def tradeoff(table: pd.DataFrame) -> Figure:
    """Clean accuracy (x) vs worst-case robust accuracy (y), one point per (model, defence), one panel per
    (norm, eps); each point is labelled with its defence."""
    threats = table.dropna(subset=["norm"])[["norm", "eps"]].drop_duplicates().sort_values(["norm", "eps"])
    n = max(len(threats), 1)
    fig, axes = plt.subplots(1, n, figsize=(4.2 * n, 4), squeeze=False)
    for ax, (_, threat) in zip(axes[0], threats.iterrows(), strict=False):
        rows = table[(table["norm"] == threat["norm"]) & (table["eps"] == threat["eps"])]
        for base, group in rows.groupby("base_model"):
            ax.scatter(group["clean_accuracy"], group["robust_accuracy_worst_case"], label=base)
            for r in group.itertuples():
                ax.annotate(r.defence, (r.clean_accuracy, r.robust_accuracy_worst_case), fontsize=7,
                            xytext=(3, 3), textcoords="offset points")  # fmt: skip
        ax.set(xlabel="clean accuracy", ylabel="robust accuracy (worst case)", xlim=(-0.02, 1.02), ylim=(-0.02, 1.02),
               title=f"{threat['norm']} eps={threat['eps']:g}")  # fmt: skip
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def png(fig: Figure) -> bytes:
    """The figure as PNG bytes (what MLflow stores), closed afterwards."""
    import io

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()
