"""The poisoning study's measures, from predictions the bridge makes: attack success rate, clean accuracy, the
true- and false-positive rates of a defence's flagged samples against the known poison indices, and Neural Cleanse's
anomaly index from the reverse-engineered masks."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from bridge.models.keras import KerasModel

Net = nn.Module | KerasModel  # a victim: a PyTorch network, or a Keras one behind KerasModel (NCHW torch in and out)
MAD_CONSISTENCY = 1.4826  # the median absolute deviation times this estimates a normal's standard deviation


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


def anomaly(norms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Neural Cleanse's anomaly index of each class (Wang et al. 2019), from the L1 norms of the classes' reverse-
    engineered masks: how far a norm lies from the median, in consistent median absolute deviations (all norms equal:
    every index 0); and the classes flagged: a norm at most the median with an index above 2 (an abnormally small
    trigger)."""
    median = np.median(norms)
    deviation = np.abs(norms - median)
    mad = MAD_CONSISTENCY * np.median(deviation)
    index = deviation / mad if mad > 0 else np.where(deviation == 0, 0.0, math.inf)
    return index, (norms <= median) & (index > 2)


def device_of(net: Net) -> torch.device:
    """Where a victim takes its inputs: a PyTorch network's parameters' device, or a KerasModel's (the CPU)."""
    return net.device if isinstance(net, KerasModel) else next(net.parameters()).device
