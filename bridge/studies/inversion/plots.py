"""The inversion grid: each class's reconstruction above its mean training image, with the bridge's verdicts."""

from __future__ import annotations

import pandas as pd
import torch
from matplotlib.figure import Figure


def inversion_grid(recon: torch.Tensor, means: torch.Tensor, per_class: pd.DataFrame, bounds: tuple[float, float]
                   ) -> Figure:  # fmt: skip
    """Top row: MIFace's reconstruction per class, titled with the victim's confidence and the evaluator's
    prediction (red when wrong); bottom row: that class's mean training image (the reference, never an input)."""
    import matplotlib.pyplot as plt

    lo, hi = bounds
    n = len(recon)
    fig, axes = plt.subplots(2, n, figsize=(1.15 * n + 0.8, 3.0), squeeze=False)
    for j, row in enumerate(per_class.to_dict("records")):
        for i, image in enumerate((recon[j], means[j])):
            pixels = ((image.cpu().numpy().transpose(1, 2, 0) - lo) / (hi - lo)).clip(0, 1)
            ax = axes[i][j]
            ax.imshow(pixels[..., 0] if pixels.shape[2] == 1 else pixels, cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
        colour = "black" if row["evaluator_correct"] else "#cf222e"
        title = f"{row['class']}: p={row['victim_confidence']:.2f}\neval {row['evaluator_pred']}"
        axes[0][j].set_title(title, fontsize=7, color=colour)
    axes[0][0].set_ylabel("MIFace", fontsize=8)
    axes[1][0].set_ylabel("class mean", fontsize=8)
    fig.suptitle("Model inversion: reconstruction per class (p: the victim's confidence; eval: the evaluator's class)",
                 fontsize=8)  # fmt: skip
    fig.tight_layout()
    return fig
