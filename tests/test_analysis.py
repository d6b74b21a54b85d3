"""Consensus and security curves against values worked out by hand on tiny per-sample tables."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from bridge.attacks.spec import resolve_attack
from bridge.studies.evasion.analysis import (
    Outcome,
    distances,
    median_distance,
    security_curve,
    security_curves,
    worst_case_by_eps,
    worst_case_per_group,
)


def cell(attack: str, toolkit: str, robust: list[bool], l2: list[float], reached: list[bool], eps=None) -> Outcome:
    spec = resolve_attack({"attack": attack, "norm": "l2", "toolkit": toolkit, "eps": eps})
    clean = [True, True, True, False]
    table = pd.DataFrame({"clean_correct": clean, "robust": robust, "reached": reached, "l2": l2})
    row = {"model": "m", "attack": attack, "norm": "l2", "eps": eps, "targeted": "none", "variant": "", "status": "ok"}
    return Outcome(spec, row, table)


def test_distances_median_and_security_curve_by_hand() -> None:
    cw = cell("cw", "art", [False] * 4, [0.5, 2.0, 9.0, 0.3], [True, True, False, False])
    # reached at 0.5 and 2.0; sample 2 never broken (inf); sample 3 misclassified clean (0)
    assert distances(cw).tolist() == [0.5, 2.0, math.inf, 0.0]
    assert median_distance(cw) == 2.0  # median of [0.5, 2.0, inf] over the three correct samples
    assert security_curve(cw, np.array([0.0, 0.5, 1.0, 2.0, 10.0])).tolist() == [0.75, 0.5, 0.5, 0.25, 0.25]
    curves = security_curves([cw], points=3)
    assert curves["eps"].tolist() == [0.0, 1.0, 2.0]  # 0 to the largest finite distance
    assert curves["robust_accuracy"].tolist() == [0.75, 0.5, 0.25]


def test_worst_case_is_per_sample_then_averaged() -> None:
    a = cell("pgd", "art", [True, True, False, False], [0.1] * 4, [False, False, True, False], eps=1.0)
    b = cell("pgd", "foolbox", [False, True, True, False], [0.1] * 4, [True, False, False, False], eps=1.0)
    table, agreement = worst_case_per_group([a, b])
    assert table.iloc[0]["robust_accuracy_worst_case"] == 0.25  # only sample 1 survives both
    assert table.iloc[0]["robust_accuracy_best_toolkit"] == 0.5  # min of means: the optimistic number
    assert a.row["robust_accuracy_worst_case"] == b.row["robust_accuracy_worst_case"] == 0.25
    matrix = next(iter(agreement.values()))
    assert matrix.loc["art", "foolbox"] == 0.5  # they agree on samples 1 and 3
    cw = cell("cw", "torchattacks", [False] * 4, [0.5, 2.0, 9.0, 0.3], [True, True, False, False])
    by_eps = worst_case_by_eps([a, b, cw])
    row = by_eps.iloc[0]
    assert (row["eps"], row["cells"]) == (1.0, 3)
    # cw breaks sample 0 within eps 1 and sample 1 only beyond it; pgd leaves sample 1: worst case 0.25
    assert row["robust_accuracy_worst_case"] == pytest.approx(0.25)
