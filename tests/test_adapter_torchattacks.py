"""The torchattacks adapter on the trained digits CNN: every table entry runs for real, no mocks."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from adapters.torchattacks_adapter import ADAPTER
from bridge.adapter import Unsupported
from bridge.metrics import perturbation_norms, within
from bridge.shared_model import SharedModel
from bridge.spec import AttackSpec, resolve_attack

N = 16
# Few steps keep the file fast; the last value caps the accuracy left on the 16 samples (clean: 14 of 16).
# DeepFool stops on the boundary, so it only roughly halves accuracy (measured 0.56 to 0.63 at 10 steps).
CASES: dict[tuple[str, str], tuple[dict[str, Any], float]] = {
    ("fgsm", "linf"): ({"eps": 0.3}, 0.2),
    ("bim", "linf"): ({"eps": 0.3, "steps": 5}, 0.2),
    ("pgd", "linf"): ({"eps": 0.3, "steps": 5}, 0.2),
    ("pgd", "l2"): ({"eps": 2.0, "steps": 5}, 0.2),
    ("mifgsm", "linf"): ({"eps": 0.3, "steps": 5}, 0.2),
    ("cw", "l2"): ({"steps": 30, "step_size": 0.05}, 0.2),
    ("deepfool", "l2"): ({"steps": 10}, 0.7),
}

Outcome = tuple[AttackSpec, torch.Tensor, torch.Tensor, torch.Tensor]  # spec, x, y, x_adv


def spec_of(attack: str, norm: str, **fields: Any) -> AttackSpec:
    return resolve_attack({"attack": attack, "toolkit": "torchattacks", "norm": norm, **fields})


def run(spec: AttackSpec, model: SharedModel, x: torch.Tensor, y: torch.Tensor, targets=None) -> torch.Tensor:
    """Translate, check, build and attack one batch the way the runner does."""
    translation = ADAPTER.translate(spec, model.n_classes)
    ADAPTER.check(translation)
    torch.manual_seed(spec.seed)
    with model.eval_mode():
        return ADAPTER.build(translation, spec, model)(x, y, targets)


def accuracy(model: SharedModel, x: torch.Tensor, labels: torch.Tensor) -> float:
    return (model.predict(x).argmax(1) == labels).float().mean().item()


@pytest.fixture(scope="module")
def outcome(digits_model, digits_batch) -> Callable[[tuple[str, str]], Outcome]:
    """Each table case run once on 16 samples, shared by the generic and the attack-specific tests."""
    x, y = digits_batch[0][:N], digits_batch[1][:N]
    done: dict[tuple[str, str], Outcome] = {}

    def get(key: tuple[str, str]) -> Outcome:
        if key not in done:
            spec = spec_of(*key, **CASES[key][0])
            done[key] = (spec, x, y, run(spec, digits_model, x, y))
        return done[key]

    return get


def test_cases_cover_the_table():
    assert set(CASES) == set(ADAPTER.table)


@pytest.mark.parametrize("key", list(CASES), ids=lambda k: "-".join(k))
def test_entry_runs_and_breaks_the_model(key, outcome, digits_model):
    spec, x, y, x_adv = outcome(key)
    assert x_adv.dtype == torch.float32 and x_adv.device == digits_model.device and x_adv.shape == x.shape
    assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0
    if spec.kind == "fixed":
        assert within(perturbation_norms(x, x_adv)[spec.norm], spec.eps).all()
    clean, adv = accuracy(digits_model, x, y), accuracy(digits_model, x_adv, y)
    assert clean >= 0.8 and adv <= CASES[key][1]


def test_cw_returns_the_clean_input_where_it_fails(outcome, digits_model):
    """No binary search: samples the fixed c does not fool come back unchanged (as the notes say)."""
    _, x, y, x_adv = outcome(("cw", "l2"))
    failed = digits_model.predict(x_adv).argmax(1) == y
    assert torch.equal(x_adv[failed], x[failed])


def test_deepfool_stops_on_the_boundary(outcome, digits_model):
    """Overshoot per step: samples it leaves correctly classified sit on the boundary (margin ~ 0)."""
    _, x, y, x_adv = outcome(("deepfool", "l2"))
    clean_ok = digits_model.predict(x).argmax(1) == y
    logits = digits_model.predict(x_adv)
    true = logits.gather(1, y[:, None])[:, 0]
    other = logits.scatter(1, y[:, None], float("-inf")).amax(1)
    still = clean_ok & (true > other)
    assert ((true - other)[still] < 1e-3).all()


def test_targeted_reaches_targets(digits_model, digits_batch):
    x, y = digits_batch[0][:N], digits_batch[1][:N]
    targets = (y + 1) % digits_model.n_classes
    x_adv = run(spec_of("pgd", "linf", eps=0.3, steps=20, targeted="random"), digits_model, x, y, targets)
    assert within(perturbation_norms(x, x_adv)["linf"], 0.3).all()
    assert accuracy(digits_model, x_adv, targets) >= 0.8


def test_restarts_run_as_multiattack(digits_model, digits_batch):
    """R restarts re-attack only the samples still correct; those never fooled come back as the clean input."""
    x, y = digits_batch[0][:N], digits_batch[1][:N]
    spec = spec_of("pgd", "l2", eps=0.5, steps=3, restarts=3)
    with digits_model.counting() as counters:
        x_adv = run(spec, digits_model, x, y)
    assert within(perturbation_norms(x, x_adv)["l2"], 0.5).all()
    still = digits_model.predict(x_adv).argmax(1) == y
    assert still.any(), "eps too large for this test: every sample fooled"
    assert torch.equal(x_adv[still], x[still])
    # 3 steps per restart plus MultiAttack's own success check after each restart.
    assert counters.forward_calls == 3 * (3 + 1)


def test_option_overrides_a_kwarg(digits_model, digits_batch):
    x, y = digits_batch[0][:N], digits_batch[1][:N]
    spec = spec_of("pgd", "linf", eps=0.3, steps=3, options={"eps": 0.01})
    assert ADAPTER.translate(spec, 10).kwargs["eps"] == 0.01
    linf = perturbation_norms(x, run(spec, digits_model, x, y))["linf"]
    assert within(linf, 0.01).all() and linf.max() > 0.009


def test_unknown_option_raises_in_check():
    translation = ADAPTER.translate(spec_of("pgd", "l2", eps=1.0, options={"bogus": 1}), 10)
    with pytest.raises(ValueError, match="no parameter bogus"):
        ADAPTER.check(translation)


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"attack": "fgsm", "norm": "l2", "eps": 1.0}, "no fgsm for norm l2"),
        ({"attack": "bim", "norm": "l2", "eps": 1.0}, "no bim for norm l2"),
        ({"attack": "pgd", "norm": "l1", "eps": 1.0}, "no pgd for norm l1"),
        ({"attack": "deepfool", "norm": "linf"}, "no deepfool for norm linf"),
        ({"attack": "pgd", "norm": "linf", "eps": 0.1, "loss": "dlr"}, "not loss 'dlr'"),
        ({"attack": "deepfool", "norm": "l2", "targeted": "random"}, "DeepFool has no targeted mode"),
        ({"attack": "deepfool", "norm": "l2", "candidates": 3}, "always uses all classes"),
        ({"attack": "cw", "norm": "l2", "binary_search_steps": 5}, "no binary search"),
        ({"attack": "pgd", "norm": "linf", "eps": 0.1, "restarts": 2, "targeted": "random"}, "targeted restarts"),
        ({"attack": "pgd", "norm": "l2", "eps": 1.0, "restarts": 2, "targeted": "least_likely"}, "targeted restarts"),
    ],
)
def test_unsupported_reasons(fields, reason):
    with pytest.raises(Unsupported, match=reason):
        ADAPTER.translate(spec_of(**fields), 10)


def test_bounds_other_than_unit_are_unsupported():
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
    model = SharedModel(net, (1, 8, 8), 10, bounds=(0.0, 255.0))
    spec = spec_of("fgsm", "linf", eps=8.0)
    with pytest.raises(Unsupported, match=r"clamps inputs to \[0, 1\]"):
        ADAPTER.build(ADAPTER.translate(spec, 10), spec, model)


def test_targeted_build_is_quiet(digits_model, digits_batch, capfd):
    x, y = digits_batch[0][:4], digits_batch[1][:4]
    run(spec_of("bim", "linf", eps=0.1, steps=1, targeted="random"), digits_model, x, y, (y + 1) % 10)
    assert capfd.readouterr() == ("", "")


def test_import_does_not_load_torchattacks():
    code = "import sys, adapters.torchattacks_adapter; assert 'torchattacks' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[1])
