"""Performance guarantees that must not cost correctness: attacks run with the weights frozen (no weight gradient is
computed or accumulated) and give exactly the examples an unfrozen run gives."""

from __future__ import annotations

from contextlib import contextmanager

import pytest
import torch
from torch import nn

from bridge.attacks.adapter import get_adapter
from bridge.attacks.spec import resolve_attack
from bridge.models.shared import SharedModel
from bridge.studies.evasion.cell import attack

TOOLKITS = ("art", "foolbox", "torchattacks")


def _model() -> SharedModel:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 10))
    return SharedModel(net, (1, 8, 8), 10, name="tiny")


def _pgd(toolkit: str, model: SharedModel, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    spec = resolve_attack({"attack": "pgd", "norm": "linf", "eps": 0.1, "steps": 5, "step_size": 0.03,
                           "random_start": True, "toolkit": toolkit, "batch_size": 8})  # fmt: skip
    x_adv, _cost, _started = attack(spec, get_adapter(toolkit).translate(spec, 10), model, x, y, None)
    return x_adv


def test_frozen_restores_each_flag_even_on_error() -> None:
    model = _model()
    model.net[0].bias.requires_grad_(False)  # a mixed state must come back exactly
    before = [p.requires_grad for p in model.parameters()]
    with pytest.raises(RuntimeError), model.frozen():
        assert not any(p.requires_grad for p in model.parameters())
        raise RuntimeError("the attack failed")
    assert [p.requires_grad for p in model.parameters()] == before


@pytest.mark.parametrize("toolkit", TOOLKITS)
def test_attack_touches_no_weight_gradient_and_gives_the_unfrozen_examples(toolkit, monkeypatch) -> None:
    model = _model()
    x, y = torch.rand(16, 1, 8, 8, generator=torch.Generator().manual_seed(1)), torch.arange(16) % 10
    frozen = _pgd(toolkit, model, x, y)
    assert all(p.grad is None for p in model.parameters()), "an attack computed a weight gradient"
    assert all(p.requires_grad for p in model.parameters())  # restored after

    @contextmanager
    def unfrozen(self):  # the behaviour before freezing: every weight in autograd during the attack
        yield self

    monkeypatch.setattr(SharedModel, "frozen", unfrozen)
    model.zero_grad(set_to_none=True)
    assert torch.equal(_pgd(toolkit, model, x, y), frozen)
    assert (frozen - x).abs().amax() > 0.05  # the attack moved the inputs


@pytest.mark.parametrize("toolkit", TOOLKITS)
def test_bf16_attack_runs_in_every_toolkit(toolkit) -> None:
    """precision bf16 (autocast on CPU here; on CUDA with channels-last too): float32 examples within the budget."""
    model = _model()
    model.precision = "bf16"
    x, y = torch.rand(16, 1, 8, 8, generator=torch.Generator().manual_seed(1)), torch.arange(16) % 10
    x_adv = _pgd(toolkit, model, x, y)
    assert x_adv.dtype == torch.float32
    assert 0.05 < float((x_adv - x).abs().amax()) <= 0.1 + 1e-6
