"""Metrics against values computed by hand on tiny tensors."""

from __future__ import annotations

import math

import pytest
import torch

from bridge.studies.evasion.metrics import evaluate_cell, perturbation_norms


def _x() -> torch.Tensor:
    return torch.full((4, 1, 2, 2), 0.5)


def test_norms_by_hand() -> None:
    x = _x()
    x_adv = x.clone()
    x_adv[0, 0, 0, 0] += 0.3  # one element: linf 0.3, l2 0.3, l0 1
    x_adv[1] += 0.1  # four elements of 0.1: linf 0.1, l2 0.2, l1 0.4, l0 4
    norms = perturbation_norms(x, x_adv)
    assert norms["linf"].tolist() == pytest.approx([0.3, 0.1, 0.0, 0.0])
    assert norms["l2"].tolist() == pytest.approx([0.3, 0.2, 0.0, 0.0])
    assert norms["l1"].tolist() == pytest.approx([0.3, 0.4, 0.0, 0.0])
    assert norms["l0"].tolist() == [1, 4, 0, 0]


def test_fixed_budget_cell_by_hand() -> None:
    x = _x()
    x_adv = x.clone()
    x_adv[0] += 0.1  # within eps 0.1, fooled
    x_adv[1] += 0.2  # over eps: a budget violation, fooled
    x_adv[2, 0, 0, 0] = 1.2  # leaves the [0,1] box (linf 0.7 is also over eps)
    y = torch.tensor([0, 1, 2, 3])
    clean_pred = torch.tensor([0, 1, 2, 0])  # sample 3 misclassified to begin with
    adv_pred = torch.tensor([5, 7, 2, 3])  # 0 and 1 fooled; 2 holds; 3 becomes "correct" by accident
    res = evaluate_cell(x, x_adv, y, clean_pred, adv_pred, norm="linf", eps=0.1, fixed_budget=True, bounds=(0, 1))
    m = res.metrics
    assert m["clean_accuracy"] == 0.75
    assert m["robust_accuracy"] == 0.25  # only sample 2: sample 3 was never correct
    assert m["attack_success_rate"] == pytest.approx(2 / 3)  # over the three initially correct samples
    assert m["budget_violations"] == 2  # sample 1 (norm) and sample 2 (box)
    assert m["linf_max"] == pytest.approx(0.7)
    assert m["linf_mean"] == pytest.approx((0.1 + 0.2 + 0.7) / 4)
    assert m["l2_mean"] == pytest.approx((0.2 + 0.4 + 0.7) / 4)
    assert m["l0_mean"] == pytest.approx((4 + 4 + 1) / 4)
    table = res.per_sample
    assert table["budget_violation"].tolist() == [False, True, True, False]
    assert table["success"].tolist() == [True, True, False, False]


def test_eps_tolerance_is_relative_and_absolute() -> None:
    x = _x()
    x_adv = x + 0.1 * (1 + 5e-7)  # inside eps*(1+1e-6)+1e-7
    y = torch.zeros(4, dtype=torch.long)
    res = evaluate_cell(x, x_adv, y, y, y, norm="linf", eps=0.1, fixed_budget=True, bounds=(0, 1))
    assert res.metrics["budget_violations"] == 0
    res = evaluate_cell(x, x + 0.1001, y, y, y, norm="linf", eps=0.1, fixed_budget=True, bounds=(0, 1))
    assert res.metrics["budget_violations"] == 4


def test_minimum_norm_attack_succeeds_only_within_eps() -> None:
    x = _x()
    x_adv = x.clone()
    x_adv[0] += 0.05  # l2 0.1: inside eps 0.5
    x_adv[1] += 0.5  # l2 1.0: beyond eps 0.5 -> not a success, not a violation
    y = torch.tensor([0, 1, 2, 3])
    adv_pred = torch.tensor([9, 9, 2, 3])
    res = evaluate_cell(x, x_adv, y, y, adv_pred, norm="l2", eps=0.5, fixed_budget=False, bounds=(0, 1))
    assert res.metrics["attack_success_rate"] == 0.25
    assert res.metrics["robust_accuracy"] == 0.75
    assert res.metrics["budget_violations"] == 0
    unbounded = evaluate_cell(x, x_adv, y, y, adv_pred, norm="l2", eps=None, fixed_budget=False, bounds=(0, 1))
    assert unbounded.metrics["attack_success_rate"] == 0.5


def test_targeted_success_means_reaching_the_target() -> None:
    x = _x()
    y = torch.tensor([0, 1, 2, 3])
    targets = torch.tensor([5, 5, 5, 5])
    adv_pred = torch.tensor([5, 4, 2, 5])  # 0 and 3 reach the target; 1 is fooled but off target
    res = evaluate_cell(x, x, y, y, adv_pred, norm="linf", eps=0.1, fixed_budget=True, bounds=(0, 1), targets=targets)
    assert res.metrics["attack_success_rate"] == 0.5
    assert res.metrics["robust_accuracy"] == 0.25  # robustness is about the true label: only sample 2 holds
    assert res.per_sample["target"].tolist() == [5, 5, 5, 5]


def test_no_correct_samples_gives_nan_success_rate() -> None:
    x = _x()
    y = torch.zeros(4, dtype=torch.long)
    wrong = torch.ones(4, dtype=torch.long)
    res = evaluate_cell(x, x, y, wrong, wrong, norm="linf", eps=0.1, fixed_budget=True, bounds=(0, 1))
    assert math.isnan(res.metrics["attack_success_rate"])
    assert res.metrics["robust_accuracy"] == 0.0
