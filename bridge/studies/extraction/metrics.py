"""What the extraction study measures, from predictions the bridge made itself (Jagielski et al. 2020): the thief's
accuracy on the task, its fidelity (agreement with the victim's labels), and how far apart two fidelities may lie
by chance."""

from __future__ import annotations

import math

import torch


def agreement(a: torch.Tensor, b: torch.Tensor) -> float:
    """The share of samples on which two label vectors agree (NaN when there are none)."""
    if a.shape != b.shape:
        raise ValueError(f"label vectors of different shapes: {tuple(a.shape)} and {tuple(b.shape)}")
    return float((a == b).float().mean()) if len(a) else math.nan


def scores(y: torch.Tensor, victim_pred: torch.Tensor, thief_pred: torch.Tensor) -> dict[str, float]:
    """On the evaluation samples: the thief's accuracy, its fidelity to the victim, and the victim's accuracy."""
    return {"test_accuracy": agreement(thief_pred, y), "fidelity": agreement(thief_pred, victim_pred),
            "victim_accuracy": agreement(victim_pred, y)}  # fmt: skip


def tolerance(share: float, n: int) -> float:
    """How far below `share` (a fidelity over `n` samples) another one may fall by chance: two binomial standard
    errors, plus one sample."""
    return 2.0 * math.sqrt(max(share * (1.0 - share), 0.0) / n) + 1.0 / n
