"""The poisoning curves: ASR and clean accuracy vs the poisoning fraction, one line per (attack, target) with the
spread over retrainings as error bars; fraction 0 is the clean model (the ASR's base rate)."""

from __future__ import annotations

import pandas as pd

from bridge.report.plots import png  # first: selects matplotlib's Agg backend

YLABELS = {"asr": "attack success rate", "clean_accuracy": "clean accuracy"}


def curve(curves: pd.DataFrame, measure: str, title: str) -> bytes:
    """`curves` (the aggregate's curve table, every model) as a PNG: a panel per model."""
    import matplotlib.pyplot as plt

    models = list(dict.fromkeys(curves["model"]))
    fig, axes = plt.subplots(1, len(models), figsize=(5.2 * len(models), 4.2), squeeze=False, sharey=True)
    for ax, model in zip(axes[0], models, strict=True):
        for (attack, target), mine in curves[curves["model"] == model].groupby(["attack", "target"], sort=False):
            mine = mine.sort_values("fraction")
            ax.errorbar(mine["fraction"], mine[f"{measure}_mean"], yerr=mine[f"{measure}_std"].fillna(0.0),
                        marker="o", capsize=3, label=f"{attack} (target {target})")  # fmt: skip
        ax.set_title(model, fontsize=9)
        ax.set_xlabel("poisoned share of the training set (0: clean model)")
        ax.set_ylabel(YLABELS[measure])
        ax.set_ylim(-0.04, 1.04)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="best")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return png(fig)
