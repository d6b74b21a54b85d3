"""The extraction curves: the thief's accuracy and fidelity vs the queries it spent, one line per attack, the
true-label baseline dashed, the victim's accuracy as the reference line."""

from __future__ import annotations

import numpy as np
import pandas as pd

from bridge.report.plots import png  # first: selects matplotlib's Agg backend
from bridge.studies.extraction.checks import BASELINE

PANELS = {"test_accuracy": "test accuracy", "fidelity": "fidelity (test split)", "fidelity_ood": "fidelity (OOD set)"}


def curves(rows: pd.DataFrame, title: str, ood: str | None) -> bytes:
    """`rows`: one model's ok rows of the extraction table, as a PNG. A panel per measure (the OOD panel only with
    an OOD set); x is the queries to the victim (for the baseline, the true labels it was given)."""
    import matplotlib.pyplot as plt

    panels = [k for k in PANELS if k != "fidelity_ood" or ood is not None]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 4.4), squeeze=False, sharey=True)
    victim = rows["victim_accuracy"].dropna()
    for ax, measure in zip(axes[0], panels, strict=True):
        for attack, mine in rows.groupby("attack", sort=False):
            mine = mine.sort_values("budget")
            style = {"color": "black", "linestyle": "--"} if attack == BASELINE else {}
            name = "true labels (baseline)" if attack == BASELINE else attack
            ax.plot(mine["budget"], mine[measure], marker="o", label=name, **style)
        if measure == "test_accuracy" and len(victim):
            ax.axhline(float(victim.iloc[0]), color="grey", linestyle=":", label="victim")
        ax.set_title(PANELS[measure] + (f": {ood}" if measure == "fidelity_ood" else ""), fontsize=9)
        ax.set_xlabel("queries to the victim")
        ax.set_ylim(-0.04, 1.04)
        ax.set_yticks(np.linspace(0, 1, 6))
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8, loc="lower right")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return png(fig)
