"""LiRA (Carlini et al., "Membership Inference Attacks From First Principles", S&P 2022), the bridge's own.

Per example, the logit-scaled confidence phi = log(p_y / (1 - p_y)) of the target and of shadow models trained with
(IN) and without (OUT) it. Online: a Gaussian per example for the IN and the OUT confidences, and the log likelihood
ratio of the target's phi under them. Offline: OUT shadows only, a one-sided test: log Pr[Z <= phi], Z ~ N(mu_out,
s_out^2). The means are per example; the variances too from LOCAL_VARIANCE shadows on; below that, as Carlini et al.
do for small shadow counts, one global variance: that of every IN (or OUT) confidence, over all examples and shadows.
"""

from __future__ import annotations

import numpy as np
from scipy.special import log_ndtr, logsumexp

LOCAL_VARIANCE = 64  # shadow models from which each example gets its own variances
MIN_VARIANCE = 1e-8  # shadows that agree exactly would give a zero variance (and infinite scores)
VARIANTS = ("online", "offline")


def phi(logits: np.ndarray, y: np.ndarray) -> np.ndarray:
    """log(p_y / (1 - p_y)) from logits, stably: z_y - logsumexp over the other classes."""
    logits = np.asarray(logits, np.float64)
    rows = np.arange(len(y))
    others = logits.copy()
    others[rows, y] = -np.inf
    return logits[rows, y] - logsumexp(others, axis=1)


def _moments(values: np.ndarray, mask: np.ndarray, local: bool) -> tuple[np.ndarray, np.ndarray]:
    """Per-example mean and variance of `values` (shadows x examples) where `mask`; unless `local`, the variance of
    every masked value (one for all examples)."""
    count = mask.sum(0)
    if (count == 0).any():
        raise ValueError(f"{int((count == 0).sum())} example(s) have no shadow model of the kind needed")
    mean = np.where(mask, values, 0).sum(0) / count
    if local:
        variance = np.where(mask, (values - mean) ** 2, 0).sum(0) / np.maximum(count - 1, 1)
    else:
        variance = np.full(len(count), values[mask].var())
    return mean, np.maximum(variance, MIN_VARIANCE)


def _log_normal(x: np.ndarray, mean: np.ndarray, variance: np.ndarray) -> np.ndarray:
    return -0.5 * (np.log(2 * np.pi * variance) + (x - mean) ** 2 / variance)


def lira_scores(target: np.ndarray, shadows: np.ndarray, shadow_in: np.ndarray, variant: str) -> np.ndarray:
    """Membership scores (higher: member) of the target's phi per example (`target`, shape n) given the shadows'
    phi (`shadows`, shape (N, n)) and which shadow trained on which example (`shadow_in`, (N, n) bool)."""
    shadows, shadow_in = np.asarray(shadows, np.float64), np.asarray(shadow_in, bool)
    local = len(shadows) >= LOCAL_VARIANCE
    mean_out, var_out = _moments(shadows, ~shadow_in, local)
    if variant == "offline":
        return log_ndtr((target - mean_out) / np.sqrt(var_out))
    if variant != "online":
        raise ValueError(f"LiRA variant must be one of {', '.join(VARIANTS)}; got {variant!r}")
    mean_in, var_in = _moments(shadows, shadow_in, local)
    return _log_normal(target, mean_in, var_in) - _log_normal(target, mean_out, var_out)
