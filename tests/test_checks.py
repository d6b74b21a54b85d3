"""Each sanity check fires on a model or cell designed to trip it, and none fires on the clean digits CNN."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from bridge.attacks.adapter import get_adapter
from bridge.attacks.spec import resolve_attack
from bridge.models.shared import SharedModel
from bridge.studies.evasion.analysis import Outcome
from bridge.studies.evasion.cell import measure
from bridge.studies.evasion.checks import model_checks, run_checks


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


def wrap(layer: nn.Module, digits_model: SharedModel) -> SharedModel:
    return SharedModel(nn.Sequential(layer, digits_model.net), digits_model.input_shape, 10, name="designed")


def test_no_check_fires_on_the_clean_model(digits_model, digits_batch) -> None:
    x, y = digits_batch
    cells = [{"attack": "fgsm", "norm": "linf", "eps": e, "toolkit": t} for e in (0.1, 0.2) for t in TOOLKITS]
    cells += [{**PGD, "eps": e, "step_size": e / 4, "toolkit": t} for e in (0.1, 0.2) for t in TOOLKITS]
    cells += [{**PGD, "eps": 0.2, "step_size": 0.05, "steps": 20, "toolkit": "torchattacks"}]  # doubled steps
    cells += [{**PGD, "eps": 1.0, "step_size": 0.1, "steps": 20, "toolkit": "torchattacks"}]  # very large eps
    cells += [{"attack": "square", "norm": "linf", "eps": 0.2, "max_queries": 200, "toolkit": "torchattacks"}]
    status = checks(digits_model, x, y, cells)
    assert status.pop("direct_beats_transfer") == "skipped"  # no defence, no transferred cells (test_defence_grid)
    assert set(status.values()) == {"passed"}, status  # every other check had its cells, and none fired


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
