"""Across cells: per-sample worst cases, agreement between toolkits, and security curves.

Everything here is computed from the per-sample tables the bridge wrote (never from toolkit flags), and the
worst case is always per sample, then averaged: mean over samples of the minimum, never the minimum of means.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations

import numpy as np
import pandas as pd
import torch

from bridge.attacks.spec import AttackSpec
from bridge.studies.evasion.metrics import within

GROUP = ["model", "attack", "norm", "eps", "targeted", "variant"]  # one spec on one victim, over its toolkits


@dataclass
class Outcome:
    """One cell after it ran: its comparison row and, when it ran, its per-sample table and x_adv."""

    spec: AttackSpec
    row: dict
    per_sample: pd.DataFrame | None = None
    x_adv: torch.Tensor | None = None
    notes: str = ""  # the toolkit's notes on its translation, as recorded when the cell ran

    @property
    def ok(self) -> bool:
        return self.row["status"] == "ok"


def distances(outcome: Outcome) -> np.ndarray:
    """Per-sample distance at which the attack broke the sample: its norm where it reached its goal,
    inf where it did not, 0 where the clean input is already misclassified."""
    table = outcome.per_sample
    d = np.where(table["reached"], table[outcome.spec.norm], np.inf)
    return np.where(table["clean_correct"], d, 0.0)


def robust_at(outcome: Outcome, eps: float) -> np.ndarray:
    """Per-sample robustness at `eps`: fixed-budget cells only at their own eps, minimum-norm cells at any."""
    if outcome.spec.kind == "fixed":
        return outcome.per_sample["robust"].to_numpy(bool)
    return ~within(distances(outcome), eps)


def group_key(o: Outcome) -> tuple:
    return tuple(o.row[k] for k in GROUP)


def worst_case_per_group(outcomes: list[Outcome]) -> tuple[pd.DataFrame, dict[tuple, pd.DataFrame]]:
    """Per (model, attack, norm, eps, targeted): robust accuracy of the per-sample worst case over toolkits,
    and each pair of toolkits' agreement (fraction of samples on which they agree about success).

    Also writes `robust_accuracy_worst_case` into each ran cell's row, for the comparison table.
    """
    rows, matrices = [], {}
    ok = [o for o in outcomes if o.ok]
    for key in sorted({group_key(o) for o in ok}, key=str):
        group = {o.spec.toolkit: o for o in ok if group_key(o) == key}
        robust = {t: o.per_sample["robust"].to_numpy(bool) for t, o in group.items()}
        worst = float(np.logical_and.reduce(list(robust.values())).mean())
        for o in group.values():
            o.row["robust_accuracy_worst_case"] = worst
        rows.append(
            {
                **dict(zip(GROUP, key, strict=True)),
                "toolkits": len(group),
                "robust_accuracy_worst_case": worst,
                "robust_accuracy_best_toolkit": float(min(r.mean() for r in robust.values())),
            }
        )
        names = sorted(group)
        broken = {t: ~robust[t] for t in names}
        matrix = pd.DataFrame(1.0, index=names, columns=names)
        for a, b in combinations(names, 2):
            matrix.loc[a, b] = matrix.loc[b, a] = float((broken[a] == broken[b]).mean())
        matrices[key] = matrix
    return pd.DataFrame(rows), matrices


def worst_case_by_eps(outcomes: list[Outcome]) -> pd.DataFrame:
    """Per (model, norm, eps): the per-sample worst case over every attack and toolkit that bears on that eps
    (fixed-budget cells at that eps, minimum-norm cells of that norm thresholded at it)."""
    ok = [o for o in outcomes if o.ok]
    rows = []
    for model, norm, eps in sorted({(o.row["model"], o.spec.norm, o.spec.eps) for o in ok if o.spec.kind == "fixed"}):
        cells = [
            o
            for o in ok
            if o.row["model"] == model and o.spec.norm == norm and (o.spec.kind == "minimum" or o.spec.eps == eps)
        ]
        robust = {_label(o): robust_at(o, eps) for o in cells}
        best_label, best = min(robust.items(), key=lambda item: item[1].mean())
        rows.append(
            {
                "model": model,
                "norm": norm,
                "eps": eps,
                "cells": len(cells),
                "robust_accuracy_worst_case": float(np.logical_and.reduce(list(robust.values())).mean()),
                "best_single_cell": best_label,
                "best_single_cell_robust_accuracy": float(best.mean()),
            }
        )
    return pd.DataFrame(rows)


def _label(o: Outcome) -> str:
    """A cell's label, marked when its examples were transferred from another model (same spec, other cell)."""
    return o.spec.label + (f" (transfer from {o.row.get('source')})" if o.row.get("evaluation") == "transfer" else "")


def security_curve(outcome: Outcome, grid: np.ndarray) -> np.ndarray:
    """Robust accuracy as a function of eps from a minimum-norm cell's per-sample distances."""
    d = distances(outcome)
    return np.array([(~within(d, eps)).mean() for eps in grid])


def median_distance(outcome: Outcome) -> float:
    """Median distance over the initially correct samples (inf when the attack failed on half or more)."""
    table = outcome.per_sample
    d = distances(outcome)[table["clean_correct"].to_numpy(bool)]
    return float(np.median(d)) if len(d) else float("nan")


def security_curves(outcomes: list[Outcome], points: int = 101) -> pd.DataFrame:
    """Long table (model, attack, norm, targeted, toolkit, eps, robust_accuracy) for every minimum-norm cell;
    the eps grid of each (model, attack, norm) runs from 0 to the largest finite distance found."""
    ok = [o for o in outcomes if o.ok and o.spec.kind == "minimum"]
    frames = []
    for key in sorted({(o.row["model"], o.spec.attack, o.spec.norm, o.spec.targeted) for o in ok}):
        group = [o for o in ok if (o.row["model"], o.spec.attack, o.spec.norm, o.spec.targeted) == key]
        finite = np.concatenate([d[np.isfinite(d)] for d in map(distances, group)])
        top = float(finite.max()) if len(finite) and finite.max() > 0 else 1.0
        grid = np.linspace(0.0, top, points)
        for o in group:
            frames.append(
                pd.DataFrame(
                    {
                        "model": key[0],
                        "attack": key[1],
                        "norm": key[2],
                        "targeted": key[3],
                        "toolkit": o.spec.toolkit,
                        "eps": grid,
                        "robust_accuracy": security_curve(o, grid),
                    }
                )
            )
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
