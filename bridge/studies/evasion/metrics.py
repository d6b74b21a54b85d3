"""Metrics computed by the bridge from the model's own outputs; a toolkit's success flag is never read.

Conventions (also in the README):
- robust_accuracy: over all samples, correct on the clean input AND not successfully attacked;
- attack_success_rate: over initially correct samples; success means misclassified (untargeted) or
  classified as the target (targeted); for minimum-norm attacks given an eps, only within eps;
- norms are of x_adv - x per sample, averaged over all samples; l0 counts changed input elements;
- budget_violations: samples whose perturbation exceeds eps*(1+1e-6)+1e-7 in the spec's norm (fixed-budget
  attacks), or that leave the input bounds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

REL_TOL, ABS_TOL = 1e-6, 1e-7


def within(norms: np.ndarray, eps: float) -> np.ndarray:
    """The bridge's one budget test, with the tolerance every metric and check uses."""
    return norms <= eps * (1 + REL_TOL) + ABS_TOL


def perturbation_norms(x: torch.Tensor, x_adv: torch.Tensor) -> dict[str, np.ndarray]:
    """Per-sample linf, l2, l1 and l0 norms of x_adv - x, computed in float64."""
    delta = (x_adv.detach().double() - x.detach().double()).flatten(1).cpu()
    return {
        "linf": delta.abs().amax(1).numpy() if delta.shape[1] else np.zeros(len(delta)),
        "l2": delta.norm(p=2, dim=1).numpy(),
        "l1": delta.abs().sum(1).numpy(),
        "l0": (delta != 0).sum(1).numpy().astype(np.float64),
    }


@dataclass
class CellResult:
    metrics: dict[str, float]
    per_sample: pd.DataFrame


def evaluate_cell(
    x: torch.Tensor,
    x_adv: torch.Tensor,
    y: torch.Tensor,
    clean_pred: torch.Tensor,
    adv_pred: torch.Tensor,
    *,
    norm: str,
    eps: float | None,
    fixed_budget: bool,
    bounds: tuple[float, float],
    targets: torch.Tensor | None = None,
) -> CellResult:
    """All per-cell metrics and the per-sample table, from labels and the model's predictions."""
    y_np, clean_np, adv_np = (t.detach().cpu().numpy() for t in (y, clean_pred, adv_pred))
    norms = perturbation_norms(x, x_adv)
    clean_correct = clean_np == y_np
    adv_correct = adv_np == y_np
    reached = adv_np == targets.cpu().numpy() if targets is not None else ~adv_correct
    in_budget = np.ones(len(y_np), bool) if eps is None else within(norms[norm], eps)
    # A minimum-norm attack given an eps succeeds only within it; a fixed-budget result is taken as is
    # and any overshoot is reported as a budget violation instead.
    success = reached & (in_budget | fixed_budget)
    fooled = ~adv_correct & (in_budget | fixed_budget)
    robust = clean_correct & ~fooled
    lo, hi = bounds
    x_flat = x_adv.detach().flatten(1).cpu()
    out_of_bounds = ((x_flat < lo) | (x_flat > hi)).any(1).numpy()
    violation = out_of_bounds | (~in_budget if fixed_budget else False)
    n = len(y_np)
    n_correct = int(clean_correct.sum())
    metrics = {
        "clean_accuracy": float(clean_correct.mean()) if n else float("nan"),
        "robust_accuracy": float(robust.mean()) if n else float("nan"),
        "attack_success_rate": float(success[clean_correct].mean()) if n_correct else float("nan"),
        "linf_mean": float(norms["linf"].mean()),
        "linf_max": float(norms["linf"].max(initial=0.0)),
        "l2_mean": float(norms["l2"].mean()),
        "l2_max": float(norms["l2"].max(initial=0.0)),
        "l0_mean": float(norms["l0"].mean()),
        "budget_violations": float(violation.sum()),
    }
    table = pd.DataFrame(
        {
            "label": y_np,
            "target": targets.cpu().numpy() if targets is not None else -1,
            "clean_pred": clean_np,
            "adv_pred": adv_np,
            "clean_correct": clean_correct,
            "success": success & clean_correct,
            "reached": reached & clean_correct,  # the attack's goal met, whatever the distance
            "robust": robust,
            "linf": norms["linf"],
            "l2": norms["l2"],
            "l1": norms["l1"],
            "l0": norms["l0"],
            "budget_violation": violation,
        }
    )
    table.index.name = "sample"
    return CellResult(metrics, table)
