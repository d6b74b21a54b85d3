"""The patch's success, computed from predictions the bridge made (a pure function, checked by hand in tests)."""

from __future__ import annotations

import torch


def success(y: torch.Tensor, clean_pred: torch.Tensor, pred: torch.Tensor, target: int | None) -> tuple[float, int]:
    """(success rate, trials it is over). Targeted: the share of the images not of the target class that the
    patched image makes the target; untargeted: the share of the correctly classified images it makes wrong. With
    several placements per image, `y` and `clean_pred` repeat with `pred` (one trial per placement)."""
    if target is None:
        eligible = clean_pred == y
        hits = pred[eligible] != y[eligible]
    else:
        eligible = y != target
        hits = pred[eligible] == target
    n = int(eligible.sum())
    return (float(hits.float().mean()) if n else float("nan")), n
