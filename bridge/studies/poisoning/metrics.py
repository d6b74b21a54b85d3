"""The poisoning study's measures, from predictions the bridge makes: attack success rate, clean accuracy, and the
true- and false-positive rates of a defence's flagged samples against the known poison indices."""

from __future__ import annotations

import math

import numpy as np


def success_rate(pred: np.ndarray, y: np.ndarray, target: int) -> tuple[float, int]:
    """Among triggered inputs whose true class is not `target`, the share predicted as `target`; and their count."""
    keep = y != target
    n = int(keep.sum())
    return (float((pred[keep] == target).mean()) if n else math.nan), n


def accuracy(pred: np.ndarray, y: np.ndarray) -> float:
    return float((pred == y).mean()) if len(y) else math.nan


def detection_rates(flagged: np.ndarray, poisoned: np.ndarray) -> dict[str, float]:
    """`flagged` and `poisoned`: boolean masks over the training set. TPR: the poisons flagged; FPR: the clean
    samples flagged."""
    n_pos, n_neg = int(poisoned.sum()), int((~poisoned).sum())
    tp, fp = int((flagged & poisoned).sum()), int((flagged & ~poisoned).sum())
    return {"tpr": tp / n_pos if n_pos else math.nan, "fpr": fp / n_neg if n_neg else math.nan,
            "n_flagged": float(flagged.sum()), "n_poison": float(n_pos), "true_positives": float(tp),
            "false_positives": float(fp)}  # fmt: skip
