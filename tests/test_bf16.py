"""precision bf16 through the evasion cell, per toolkit, on CPU: the attack's forward passes really run in bf16, the
examples are finite float32 within the budget, the network laid out channels-last as on CUDA; and a cell whose
toolkit cannot run in bf16 says so (`Unsupported`) instead of failing the study."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from bridge.attacks.adapter import Unsupported, get_adapter
from bridge.attacks.spec import resolve_attack
from bridge.models.shared import SharedModel
from bridge.studies.evasion.cell import measure

TOOLKITS = ("art", "foolbox", "torchattacks")
EPS = {"linf": 0.1, "l2": 0.5}


def _model(precision: str = "bf16") -> SharedModel:
    """A digits-sized CNN on 3x8x8 inputs, channels-last as SharedModel lays it out for bf16 on CUDA: three channels,
    so that a channels-last gradient is not also contiguous."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 10))
    model = SharedModel(net, (3, 8, 8), 10, name="tiny", precision=precision)
    model.net.to(memory_format=torch.channels_last)
    return model


def _batch() -> tuple[torch.Tensor, torch.Tensor]:
    return torch.rand(16, 3, 8, 8, generator=torch.Generator().manual_seed(1)), torch.arange(16) % 10


def _cell(toolkit: str, norm: str, model: SharedModel, x: torch.Tensor, y: torch.Tensor):
    spec = resolve_attack({"attack": "pgd", "norm": norm, "eps": EPS[norm], "steps": 2, "step_size": EPS[norm] / 2,
                           "random_start": False, "toolkit": toolkit, "batch_size": 8})  # fmt: skip
    return measure(spec, get_adapter(toolkit).translate(spec, 10), model, x, y, model.predict(x))


@pytest.mark.parametrize("norm", ["linf", "l2"])
@pytest.mark.parametrize("toolkit", TOOLKITS)
def test_bf16_pgd_cell_runs_in_bf16_within_the_budget(toolkit, norm) -> None:
    model, (x, y) = _model(), _batch()
    dtypes = []
    for layer in (model.net[0], model.net[3]):
        layer.register_forward_hook(lambda _m, _i, out: dtypes.append(out.dtype))
    m = _cell(toolkit, norm, model, x, y)
    assert m.metrics["forward_calls"] > 0 and m.metrics["backward_calls"] > 0
    assert set(dtypes) == {torch.bfloat16}  # every pass ran under autocast: nothing was cast back to float32
    assert m.x_adv.dtype == torch.float32 and torch.isfinite(m.x_adv).all()
    distance = (m.x_adv - x).flatten(1)
    size = distance.abs().amax(1) if norm == "linf" else distance.norm(dim=1)
    assert float(size.max()) <= EPS[norm] * (1 + 1e-5) and float(size.max()) > EPS[norm] / 4  # it moved, within eps
    assert m.metrics["budget_violations"] == 0


def test_the_channels_last_gradient_is_what_the_layout_fix_hands_back(monkeypatch) -> None:
    """Without `_ContiguousGrad`, torchattacks' PGDL2 fails on a channels-last network (`grad.view`), in fp32 as in
    bf16: the bf16 error stands (the cell fails, it is not called a bf16 limitation)."""
    from bridge.models import shared

    monkeypatch.setattr(shared._ContiguousGrad, "apply", lambda x: x)
    model, (x, y) = _model(), _batch()
    with pytest.raises(RuntimeError, match="view size is not compatible"):
        _cell("torchattacks", "l2", model, x, y)
    assert model.precision == "bf16"


def _refusing_bf16(monkeypatch) -> None:
    """torchattacks made to fail whenever the model it attacks is bf16, as a toolkit that cannot run bf16 would."""
    adapter = get_adapter("torchattacks")
    build = type(adapter).build

    def refusing(self, translation, spec, model):
        run = build(self, translation, spec, model)

        def attack(x, y, targets):
            if model.precision == "bf16":
                raise RuntimeError("expected scalar type Float but found BFloat16")
            return run(x, y, targets)

        return attack

    monkeypatch.setattr(type(adapter), "build", refusing)


def test_a_toolkit_that_cannot_run_bf16_makes_the_cell_unsupported_saying_so(monkeypatch) -> None:
    _refusing_bf16(monkeypatch)
    model, (x, y) = _model(), _batch()
    with pytest.raises(Unsupported) as info:
        _cell("torchattacks", "linf", model, x, y)
    assert str(info.value) == ("torchattacks PGD cannot run under precision bf16 (RuntimeError: expected scalar type "
                               "Float but found BFloat16); it runs under fp32")  # fmt: skip
    assert model.precision == "bf16"  # restored after the fp32 try
    fp32 = _cell("torchattacks", "linf", _model("fp32"), x, y)  # the same refusing toolkit, fp32: an ordinary cell
    assert fp32.metrics["forward_calls"] > 0 and float((fp32.x_adv - x).abs().amax()) > 0.05
