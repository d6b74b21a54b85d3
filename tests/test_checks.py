"""Each sanity check fires on a model or cell designed to trip it, and none fires on the clean digits CNN."""

from __future__ import annotations

import re

import pytest
import torch
from torch import nn

from bridge.attacks.adapter import get_adapter
from bridge.attacks.spec import resolve_attack
from bridge.models.shared import SharedModel
from bridge.studies.evasion.analysis import Outcome
from bridge.studies.evasion.cell import measure
from bridge.studies.evasion.checks import (
    detector_not_degenerate,
    gradients_available,
    model_checks,
    run_checks,
    toolkits_agree,
)


def outcomes(model: SharedModel, x: torch.Tensor, y: torch.Tensor, cells: list[dict]) -> list[Outcome]:
    """Run cells through the study's own measurement path (no MLflow)."""
    clean = model.predict(x)
    out = []
    for fields in cells:
        spec = resolve_attack({"batch_size": 64, **fields})
        adapter = get_adapter(spec.toolkit)
        translation = adapter.translate(spec, model.n_classes)
        adapter.check(translation)
        m = measure(spec, translation, model, x, y, clean)
        row = {"model": model.name, "toolkit": spec.toolkit, "status": "ok", **m.metrics}
        out.append(Outcome(spec, row, m.per_sample, m.x_adv))
    return out


def checks(model, x, y, cells) -> dict[str, str]:
    probes = model_checks(model, x, y, model.predict(x).argmax(1))
    lo, hi = model.bounds
    table = run_checks(outcomes(model, x, y, cells), probes, model.n_classes, hi - lo)
    return dict(zip(table["name"], table["status"], strict=True))


PGD = {"attack": "pgd", "norm": "linf", "steps": 10, "random_start": False}
TOOLKITS = ("art", "foolbox", "torchattacks")


class Quantize(nn.Module):
    """Rounds inputs to a grid: the network still classifies, but input gradients are exactly zero."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.round(x * 8) / 8


class Noisy(nn.Module):
    """Adds fresh noise on every call, in eval mode too: a randomised defence."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + 0.05 * torch.randn_like(x)


class Scale(nn.Module):
    """Multiplies the logits: the same decisions, but a softmax saturated to exactly one-hot in float32."""

    def __init__(self, factor: float):
        super().__init__()
        self.factor = factor

    def forward(self, logits: torch.Tensor) -> torch.Tensor:
        return logits * self.factor


def wrap(layer: nn.Module, digits_model: SharedModel, after: bool = False) -> SharedModel:
    """The digits network behind `layer` (or in front of it, `after`), as a new shared model."""
    net = nn.Sequential(digits_model.net, layer) if after else nn.Sequential(layer, digits_model.net)
    return SharedModel(net, digits_model.input_shape, 10, name="designed")


def test_no_check_fires_on_the_clean_model(digits_model, digits_batch) -> None:
    x, y = digits_batch
    cells = [{"attack": "fgsm", "norm": "linf", "eps": e, "toolkit": t} for e in (0.1, 0.2) for t in TOOLKITS]
    cells += [{**PGD, "eps": e, "step_size": e / 4, "toolkit": t} for e in (0.1, 0.2) for t in TOOLKITS]
    cells += [{**PGD, "eps": 0.2, "step_size": 0.05, "steps": 20, "toolkit": "torchattacks"}]  # doubled steps
    cells += [{**PGD, "eps": 1.0, "step_size": 0.1, "steps": 20, "toolkit": "torchattacks"}]  # very large eps
    cells += [{"attack": "square", "norm": "linf", "eps": 0.2, "max_queries": 200, "toolkit": "torchattacks"}]
    status = checks(digits_model, x, y, cells)
    assert status.pop("direct_beats_transfer") == "skipped"  # no defence, no transferred cells (test_defence_grid)
    assert status.pop("detector_not_degenerate") == "skipped"  # no detector (test_a_degenerate_detector_is_flagged)
    assert set(status.values()) == {"passed"}, status  # every other check had its cells, and none fired


def test_every_model_probe_passes_on_the_clean_model(digits_model, digits_batch) -> None:
    x, y = digits_batch
    probes = model_checks(digits_model, x, y, digits_model.predict(x).argmax(1))
    assert [p.status for p in probes] == ["passed", "passed"], probes
    assert probes[0].detail.startswith("ce: 0%, margin: 0%, dlr: 0% of ")  # every loss probed, none vanishing


class FirstTwo(nn.Module):
    """The first two logits: a two-class model."""

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return z[:, :2]


def test_a_two_class_model_says_dlr_was_not_probed(digits_model, digits_batch) -> None:
    x, y = digits_batch
    keep = y < 2
    model = SharedModel(nn.Sequential(digits_model.net, FirstTwo()), digits_model.input_shape, 2, name="two")
    check = gradients_available(model, x[keep], y[keep], model.predict(x[keep]).argmax(1))
    assert re.match(r"ce: \d+%, margin: 0% of \d+ correctly classified", check.detail), check.detail
    assert "; not probed: dlr" in check.detail  # DLR needs three classes


def test_saturated_logits_trip_the_gradient_check_on_the_cross_entropy(digits_model, digits_batch) -> None:
    """Logits x 1e4: the softmax is exactly one-hot, so the cross-entropy gradient is exactly zero on every correct
    sample and FGSM finds nothing, while the margin and DLR gradients (scale-free) still point the way."""
    x, y = digits_batch
    model = wrap(Scale(1e4), digits_model, after=True)
    clean = model.predict(x).argmax(1)
    check = gradients_available(model, x, y, clean)
    correct = int((clean == y).sum())
    assert check.status == "failed", check
    assert check.detail.startswith(f"ce: 100%, margin: 0%, dlr: 0% of {correct} correctly classified samples")
    assert "attacks on the ce loss are blind" in check.detail
    assert model.loss_gradient(x[clean == y], y[clean == y], "ce").abs().max() == 0  # exactly zero, not just small
    (fgsm,) = outcomes(model, x, y, [{"attack": "fgsm", "norm": "linf", "eps": 0.3, "toolkit": "torchattacks"}])
    assert fgsm.row["robust_accuracy"] == fgsm.row["clean_accuracy"]  # blind: eps 0.3 breaks no sample


def test_zero_gradients_trip_gradient_and_large_eps_checks(digits_model, digits_batch) -> None:
    x, y = digits_batch
    model = wrap(Quantize(), digits_model)
    assert (model.predict(x).argmax(1) == y).float().mean() > 0.8  # still a working classifier
    cells = [{**PGD, "eps": 1.0, "step_size": 0.1, "steps": 10, "toolkit": "torchattacks"}]
    status = checks(model, x, y, cells)
    assert status["gradients_not_vanishing"] == "failed"
    assert status["large_eps_reaches_chance"] == "failed"  # blind gradients: an unbounded PGD does nothing


def test_randomised_outputs_trip_the_determinism_checks(digits_model, digits_batch) -> None:
    x, y = digits_batch
    model = wrap(Noisy(), digits_model)
    cells = [{**PGD, "eps": 0.1, "step_size": 0.025, "toolkit": t} for t in TOOLKITS]
    status = checks(model, x, y, cells)
    assert status["deterministic_outputs"] == "failed"
    assert status["deterministic_attacks_agree"] == "failed"  # the same deterministic attack, different noise


def test_crippled_cells_trip_the_result_checks(digits_model, digits_batch) -> None:
    """Real toolkit cells made weak or wrong, as a mis-set evaluation would be: a step size far too small
    for the budget, and a native option that overrides the spec's eps."""
    x, y = digits_batch
    cells = [
        {"attack": "fgsm", "norm": "linf", "eps": 0.1, "toolkit": "art"},
        {**PGD, "eps": 0.1, "step_size": 0.025, "toolkit": "art"},
        {**PGD, "eps": 0.2, "step_size": 1e-4, "toolkit": "art"},  # barely moves: weaker at a larger eps
        {**PGD, "eps": 0.2, "step_size": 0.05, "steps": 5, "toolkit": "art"},  # fewer steps, yet stronger
        {"attack": "fgsm", "norm": "linf", "eps": 0.2, "toolkit": "art"},
        {"attack": "fgsm", "norm": "linf", "eps": 0.05, "toolkit": "art", "options": {"eps": 0.3}},  # over budget
    ]
    status = checks(digits_model, x, y, cells)
    assert status["monotone_in_eps"] == "failed"
    assert status["iterative_not_weaker_than_fgsm"] == "failed"
    assert status["more_steps_not_weaker"] == "failed"
    assert status["no_budget_violations"] == "failed"


@pytest.mark.parametrize("toolkit", ["torchattacks", "art"])
def test_square_beating_white_box_trips_the_masking_check(toolkit, digits_model, digits_batch) -> None:
    x, y = digits_batch
    model = wrap(Quantize(), digits_model)
    cells = [
        {**PGD, "eps": 0.3, "step_size": 0.05, "toolkit": "torchattacks"},
        {"attack": "square", "norm": "linf", "eps": 0.3, "max_queries": 300, "toolkit": toolkit},
    ]
    status = checks(model, x, y, cells)
    assert status["white_box_beats_score_based"] == "failed"


def crafted(accuracies: dict[str, float], cell: dict) -> list[Outcome]:
    """Outcomes of one spec in several toolkits with the given robust accuracies (no per-sample table), each with
    the notes its translation records when the cell runs."""
    from bridge.attacks.adapter import get_adapter

    out = []
    for toolkit, accuracy in accuracies.items():
        spec = resolve_attack({"batch_size": 64, **cell, "toolkit": toolkit})
        adapter = get_adapter(toolkit)  # the notes a cell's translation records
        notes = adapter.translate(spec, 10).notes if adapter.entry(spec) is not None else ""
        row = {"model": "m", "toolkit": toolkit, "status": "ok", "robust_accuracy": accuracy}
        out.append(Outcome(spec, row, notes=notes))
    return out


SQUARE = {"attack": "square", "norm": "linf", "eps": 0.3, "max_queries": 1000}
APGD = {"attack": "apgd", "norm": "linf", "eps": 0.3}


def test_toolkits_that_disagree_are_named_with_their_notes() -> None:
    apart = crafted({"art": 0.62, "torchattacks": 0.50}, SQUARE)  # 12 points
    close = crafted({"art": 0.52, "foolbox": 0.50, "torchattacks": 0.49}, APGD)  # 3 points
    check = toolkits_agree(apart + close, tol=1 / 64)
    assert check.status == "failed"
    assert check.cells == "square-linf eps=0.3: art 0.620, torchattacks 0.500"  # apgd is within the threshold
    assert "; [square-linf | art] loss=None is ART's margin" in check.detail  # each translation's notes, once
    assert toolkits_agree(close, tol=1 / 64).status == "passed"
    assert toolkits_agree(crafted({"art": 0.52, "torchattacks": 0.40}, APGD), tol=0.2).status == "passed"  # 1 sample
    other_eps = crafted({"art": 0.9}, APGD) + crafted({"torchattacks": 0.1}, {**APGD, "eps": 0.1})
    assert toolkits_agree(other_eps, tol=1 / 64).status == "skipped"  # no spec in two toolkits: nothing to compare


def test_a_degenerate_detector_is_flagged() -> None:
    def row(toolkit: str, detection: float, fpr: float) -> dict:
        return {"toolkit": toolkit, "trained_on": "art", "detection_rate": detection, "false_positive_rate": fpr}

    flags_everything = detector_not_degenerate([row("art", 1.0, 1.0)])
    assert flags_everything.status == "failed"
    assert flags_everything.cells == "art examples, trained on art: detection rate 1.000 at false positive rate 1.000"
    assert detector_not_degenerate([row("art", 0.95, 0.05), row("foolbox", 0.2, 0.2)]).cells.startswith("foolbox")
    assert detector_not_degenerate([row("art", 0.95, 0.05), row("foolbox", 0.8, 0.05)]).status == "passed"
    assert detector_not_degenerate([]).status == "skipped"
    table = run_checks([], [], 10, 1.0, detector=[row("art", 1.0, 1.0)]).set_index("name")["status"]
    assert table["detector_not_degenerate"] == "failed"
