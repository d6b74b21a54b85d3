"""Membership metrics from attack scores, computed by the bridge: ROC, AUC, balanced accuracy, TPR at low FPR.

Scores are higher for "member"; `members` is 1 for a member, 0 for a non-member. With n non-members the false
positive rates a threshold can reach are multiples of 1/n: where a level (0.1 % of 100 non-members, say) is below
1/n, the TPR reported at that level is the TPR at zero false positives (the strictest threshold admitting none), and
`fpr_floor` (1/n) says so.
"""

from __future__ import annotations

import math

import numpy as np
from sklearn.metrics import roc_auc_score, roc_curve

LEVELS = {"tpr_at_fpr_0.001": 0.001, "tpr_at_fpr_0.01": 0.01}  # the low-FPR operating points of Carlini et al.
NULL_SES = 3.0  # how many standard errors of the AUC under the null a model that never saw the members may stray


def roc(scores: np.ndarray, members: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(fpr, tpr) at every distinct score used as a threshold (member iff score >= threshold), from (0, 0)."""
    fpr, tpr, _ = roc_curve(np.asarray(members, int), np.asarray(scores, float), drop_intermediate=False)
    return fpr, tpr


def tpr_at_fpr(fpr: np.ndarray, tpr: np.ndarray, level: float) -> float:
    """The highest TPR of a threshold whose FPR is at most `level` (at least the zero-false-positive one)."""
    return float(tpr[fpr <= level + 1e-12].max())


def balanced_accuracy(fpr: np.ndarray, tpr: np.ndarray) -> float:
    """The best (TPR + TNR) / 2 over thresholds: the threshold is chosen with the labels (an upper bound)."""
    return float(((tpr + 1 - fpr) / 2).max())


def membership_metrics(scores: np.ndarray, members: np.ndarray) -> dict[str, float]:
    """AUC, best-threshold balanced accuracy, TPR at 0.1 % and 1 % FPR, and the FPR floor 1/n_nonmembers."""
    members = np.asarray(members, int)
    n_in, n_out = int(members.sum()), int((1 - members).sum())
    if not n_in or not n_out:
        raise ValueError(f"membership metrics need members and non-members; got {n_in} and {n_out}")
    fpr, tpr = roc(scores, members)
    auc = float(roc_auc_score(members, np.asarray(scores, float)))
    out = {"auc": auc, "balanced_accuracy": balanced_accuracy(fpr, tpr)}
    out |= {name: tpr_at_fpr(fpr, tpr, level) for name, level in LEVELS.items()}
    return out | {"fpr_floor": 1.0 / n_out, "n_members": float(n_in), "n_nonmembers": float(n_out)}


def chance_tolerance(n_in: int, n_out: int, ses: float = NULL_SES) -> float:
    """`ses` standard errors of the AUC of scores independent of membership (Mann-Whitney's null variance,
    (n_in + n_out + 1) / (12 n_in n_out))."""
    return ses * math.sqrt((n_in + n_out + 1) / (12 * n_in * n_out))
