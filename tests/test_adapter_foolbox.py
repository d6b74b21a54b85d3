"""Foolbox adapter: every table entry runs for real on the digits CNN and respects bounds, eps and targets."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from adapters.foolbox_adapter import ADAPTER
from bridge.adapter import Unsupported
from bridge.shared_model import SharedModel
from bridge.spec import resolve_attack

N = 16
EPS = {"linf": 0.3, "l2": 2.0, "l1": 10.0}

# One cell per table entry (few steps, to stay fast); DeepFool also with its cross-entropy loss and with
# candidates limited to the top 4 classes (the default None means all classes).
CELLS: list[dict[str, Any]] = [
    *({"attack": "fgsm", "norm": n, "eps": EPS[n]} for n in ("linf", "l2")),
    *({"attack": "bim", "norm": n, "eps": EPS[n], "steps": 5} for n in ("linf", "l2", "l1")),
    *({"attack": "pgd", "norm": n, "eps": EPS[n], "steps": 5} for n in ("linf", "l2", "l1")),
    {"attack": "mifgsm", "norm": "linf", "eps": 0.3, "steps": 5},
    {"attack": "cw", "norm": "l2", "steps": 30, "step_size": 0.05},
    {"attack": "deepfool", "norm": "l2", "steps": 10},
    {"attack": "deepfool", "norm": "linf", "steps": 10, "candidates": 4},
    {"attack": "deepfool", "norm": "l2", "steps": 10, "candidates": 4, "loss": "ce"},
]


def norms(delta: torch.Tensor, norm: str) -> torch.Tensor:
    flat = delta.flatten(1)
    return {"linf": flat.abs().amax(1), "l2": flat.norm(dim=1), "l1": flat.abs().sum(1)}[norm]


def accuracy(model: SharedModel, x: torch.Tensor, y: torch.Tensor) -> float:
    return (model.predict(x).argmax(1) == y).float().mean().item()


def run_cell(model: SharedModel, x: torch.Tensor, y: torch.Tensor, cell: dict[str, Any], targets=None):
    spec = resolve_attack({"toolkit": "foolbox", **cell})
    translation = ADAPTER.translate(spec, model.n_classes)
    ADAPTER.check(translation)
    with model.eval_mode(), model.counting() as counters:
        x_adv = ADAPTER.build(translation, spec, model)(x, y, targets)
    return spec, x_adv, counters


def test_table_covers_catalogue():
    assert set(ADAPTER.table) == {
        ("fgsm", "linf"), ("fgsm", "l2"), ("bim", "linf"), ("bim", "l2"), ("bim", "l1"), ("pgd", "linf"),
        ("pgd", "l2"), ("pgd", "l1"), ("mifgsm", "linf"), ("cw", "l2"), ("deepfool", "l2"), ("deepfool", "linf"),
    }  # fmt: skip
    assert {(c["attack"], c["norm"]) for c in CELLS} == set(ADAPTER.table)


@pytest.mark.parametrize("cell", CELLS, ids=lambda c: f"{c['attack']}-{c['norm']}-{c.get('loss', 'default')}")
def test_entry_runs_and_attacks(digits_model, digits_batch, cell):
    x, y = digits_batch[0][:N], digits_batch[1][:N]
    spec, x_adv, _ = run_cell(digits_model, x, y, cell)
    assert x_adv.dtype == torch.float32 and x_adv.device == digits_model.device and x_adv.shape == x.shape
    low, high = digits_model.bounds
    assert x_adv.min() >= low and x_adv.max() <= high
    if spec.kind == "fixed":
        assert (norms(x_adv - x, spec.norm) <= spec.eps * (1 + 1e-6) + 1e-7).all()
    clean, adv = accuracy(digits_model, x, y), accuracy(digits_model, x_adv, y)
    assert clean >= 0.8 and adv <= 0.25 * clean, (clean, adv)


def test_translation_is_explicit():
    spec = resolve_attack({"attack": "pgd", "toolkit": "foolbox", "norm": "l2", "eps": 1.0, "steps": 10})
    t = ADAPTER.translate(spec, 10)
    assert t.native == "L2ProjectedGradientDescentAttack"
    assert t.kwargs == {"abs_stepsize": 0.25, "rel_stepsize": 0.25, "steps": 10, "random_start": True}
    assert t.call_kwargs == {"epsilons": 1.0}
    cw = ADAPTER.translate(resolve_attack({"attack": "cw", "toolkit": "foolbox", "norm": "l2"}), 10)
    assert cw.call_kwargs == {"epsilons": None} and cw.kwargs["abort_early"] is False


@pytest.mark.parametrize("cell", [{"attack": "pgd", "norm": "linf"}, {"attack": "cw", "norm": "l2", "steps": 100}])
def test_targeted_reaches_targets(digits_model, digits_batch, cell):
    x, y = digits_batch[0][:N], digits_batch[1][:N]
    targets = (y + 1 + torch.randint(0, 9, y.shape, generator=torch.Generator().manual_seed(0))) % 10
    extra = {"eps": 0.3, "steps": 20} if cell["attack"] == "pgd" else {"step_size": 0.05}
    _, x_adv, _ = run_cell(digits_model, x, y, {**cell, **extra, "targeted": "random"}, targets)
    hit = (digits_model.predict(x_adv).argmax(1) == targets).float().mean().item()
    assert hit >= 0.75, hit


def test_restarts_use_repeat(digits_model, digits_batch):
    """restarts=3 runs the whole attack three times (each run: 4 gradient steps plus Foolbox's success check)."""
    x, y = digits_batch[0][:N], digits_batch[1][:N]
    cell = {"attack": "pgd", "norm": "linf", "eps": 0.05, "steps": 4, "restarts": 3}
    spec, x_adv, counters = run_cell(digits_model, x, y, cell)
    assert counters.backward_calls == 3 * 4 and counters.forward_calls == 3 * 5
    assert (norms(x_adv - x, "linf") <= spec.eps * (1 + 1e-6) + 1e-7).all()


@pytest.mark.parametrize(
    ("cell", "reason"),
    [
        ({"attack": "fgsm", "norm": "linf", "eps": 0.1, "targeted": "random"}, "no targeted mode"),
        ({"attack": "fgsm", "norm": "l2", "eps": 1.0, "targeted": "least_likely"}, "no targeted mode"),
        ({"attack": "deepfool", "norm": "l2", "targeted": "random"}, "no targeted mode"),
        ({"attack": "pgd", "norm": "linf", "eps": 0.1, "loss": "dlr"}, "not loss 'dlr'"),
        ({"attack": "cw", "norm": "l2", "loss": "ce"}, "not loss 'ce'"),
        ({"attack": "deepfool", "norm": "linf", "loss": "margin"}, "not loss 'margin'"),
    ],
)
def test_unsupported(cell, reason):
    with pytest.raises(Unsupported, match=reason):
        ADAPTER.translate(resolve_attack({"toolkit": "foolbox", **cell}), 10)


def test_options_reach_native_object(digits_model, digits_batch):
    x, y = digits_batch[0][:N], digits_batch[1][:N]
    cell = {"attack": "pgd", "norm": "linf", "eps": 0.1, "steps": 10, "options": {"steps": 3}}
    _, _, counters = run_cell(digits_model, x, y, cell)
    assert counters.backward_calls == 3
    spec = resolve_attack({"attack": "cw", "toolkit": "foolbox", "norm": "l2", "options": {"abort_early": True}})
    t = ADAPTER.translate(spec, 10)
    assert ADAPTER.native_class(t.native)(**t.kwargs).abort_early is True


def test_unknown_option_raises():
    spec = resolve_attack({"attack": "pgd", "toolkit": "foolbox", "norm": "linf", "eps": 0.1, "options": {"bogus": 1}})
    with pytest.raises(ValueError, match="no parameter bogus"):
        ADAPTER.check(ADAPTER.translate(spec, 10))


def test_cw_failures_return_clean_input(digits_model, digits_batch):
    """Foolbox CW returns all-zero images where it finds nothing; the adapter must return the clean input."""
    x, y = digits_batch[0][:N], digits_batch[1][:N]
    cell = {"attack": "cw", "norm": "l2", "steps": 5, "step_size": 0.01, "initial_const": 0.01}
    _, x_adv, _ = run_cell(digits_model, x, y, cell)
    failed = digits_model.predict(x_adv).argmax(1) == y
    assert failed.sum() >= N // 2
    assert torch.equal(x_adv[failed], x[failed])
    assert not (x_adv.flatten(1) == 0).all(1).any()
