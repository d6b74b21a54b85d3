"""The ART adapter on the trained digits CNN: every table entry runs for real and keeps its contract."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from adapters.art_adapter import ADAPTER
from bridge.adapter import Unsupported
from bridge.metrics import perturbation_norms, within
from bridge.shared_model import SharedModel
from bridge.spec import resolve_attack

N = 16

# One quick but effective setting per table entry (eps: linf 0.3, l2 2.0, l1 8.0).
CASES: dict[tuple[str, str], dict[str, Any]] = {
    ("fgsm", "linf"): {"eps": 0.3},
    ("fgsm", "l2"): {"eps": 2.0},
    ("bim", "linf"): {"eps": 0.3, "steps": 5},
    ("pgd", "linf"): {"eps": 0.3, "steps": 5},
    ("pgd", "l2"): {"eps": 2.0, "steps": 5},
    ("pgd", "l1"): {"eps": 8.0, "steps": 5},
    ("mifgsm", "linf"): {"eps": 0.3, "steps": 5},
    ("cw", "l2"): {"steps": 5, "binary_search_steps": 1},
    ("deepfool", "l2"): {"steps": 10},
}


def spec_for(attack: str, norm: str, **fields: Any):
    return resolve_attack({"attack": attack, "toolkit": "art", "norm": norm, **fields})


def run(spec, model: SharedModel, x: torch.Tensor, y: torch.Tensor, targets: torch.Tensor | None = None):
    """Translate, check, build and run one batch the way the runner does; returns (x_adv, counters)."""
    translation = ADAPTER.translate(spec, model.n_classes)
    ADAPTER.check(translation)
    with model.eval_mode(), model.counting() as counters:
        x_adv = ADAPTER.build(translation, spec, model)(x, y, targets)
    return x_adv, counters


def accuracy(model: SharedModel, x: torch.Tensor, y: torch.Tensor) -> float:
    return (model.predict(x).argmax(1) == y).float().mean().item()


@pytest.fixture(scope="module")
def batch(digits_batch):
    x, y = digits_batch
    return x[:N], y[:N]


def test_cases_cover_the_table():
    assert set(CASES) == set(ADAPTER.table)


@pytest.mark.parametrize(("attack", "norm"), sorted(CASES))
def test_entry_runs_and_keeps_contract(attack, norm, digits_model, batch):
    x, y = batch
    spec = spec_for(attack, norm, **CASES[attack, norm])
    assert ADAPTER.translate(spec, 10).as_dict()["native_class"] == ADAPTER.table[attack, norm].native
    x_adv, counters = run(spec, digits_model, x, y)

    assert x_adv.dtype == torch.float32 and x_adv.device == digits_model.device and x_adv.shape == x.shape
    assert digits_model.device == torch.device("cpu")  # ART did not move the model
    lo, hi = digits_model.bounds
    assert x_adv.min() >= lo and x_adv.max() <= hi
    if spec.kind == "fixed":
        assert within(perturbation_norms(x, x_adv)[norm], spec.eps).all()
    assert counters.forward_calls > 0 and counters.backward_calls > 0  # ART calls the SharedModel itself
    assert accuracy(digits_model, x_adv, y) <= accuracy(digits_model, x, y) - 0.3


def test_targeted_pgd_reaches_targets(digits_model, batch):
    x, y = batch
    targets = (y + 1) % 10
    x_adv, _ = run(spec_for("pgd", "linf", eps=0.3, steps=20, targeted="random"), digits_model, x, y, targets)
    assert (digits_model.predict(x_adv).argmax(1) == targets).float().mean() >= 0.75


def test_untargeted_attacks_use_the_given_labels(digits_model, batch):
    """ART would attack its own predictions when y is missing; the adapter always passes the true labels."""
    x, y = batch
    spec = spec_for("fgsm", "linf", eps=0.1)
    with_true, _ = run(spec, digits_model, x, y)
    with_other, _ = run(spec, digits_model, x, (y + 1) % 10)
    assert not torch.equal(with_true, with_other)


def test_restarts_use_num_random_init(digits_model, batch):
    x, y = batch
    spec = spec_for("pgd", "linf", eps=0.1, steps=3, restarts=3)
    assert ADAPTER.translate(spec, 10).kwargs["num_random_init"] == 3
    assert ADAPTER.translate(spec_for("pgd", "linf", eps=0.1, random_start=False), 10).kwargs["num_random_init"] == 0
    x_adv, counters = run(spec, digits_model, x, y)
    assert counters.backward_calls >= 3 * 3  # three runs of three steps
    assert within(perturbation_norms(x, x_adv)["linf"], 0.1).all()


def test_deepfool_leaves_misclassified_samples_unchanged(digits_model, batch):
    x, y = batch
    wrong = digits_model.predict(x).argmax(1) != y
    assert wrong.any()
    x_adv, _ = run(spec_for("deepfool", "l2", steps=10), digits_model, x, y)
    assert torch.equal(x_adv[wrong], x[wrong])
    assert (digits_model.predict(x_adv[~wrong]).argmax(1) != y[~wrong]).all()


def test_deepfool_candidates_default_to_all_classes():
    assert ADAPTER.translate(spec_for("deepfool", "l2"), 10).kwargs["nb_grads"] == 10
    assert ADAPTER.translate(spec_for("deepfool", "l2", candidates=3), 10).kwargs["nb_grads"] == 3


def test_deepfool_refuses_bounds_of_other_width():
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
    model = SharedModel(net, (1, 8, 8), 10, bounds=(0.0, 255.0))
    spec = spec_for("deepfool", "l2")
    with pytest.raises(Unsupported, match="bounds' width"):
        ADAPTER.build(ADAPTER.translate(spec, 10), spec, model)


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"attack": "bim", "norm": "l2", "eps": 1.0}, "no bim for norm l2 (it has bim for linf)"),
        ({"attack": "bim", "norm": "l1", "eps": 1.0}, "no bim for norm l1"),
        ({"attack": "deepfool", "norm": "linf"}, "no deepfool for norm linf (it has deepfool for l2)"),
        ({"attack": "deepfool", "norm": "l2", "targeted": "random"}, "DeepFool has no targeted mode"),
        ({"attack": "pgd", "norm": "linf", "eps": 0.1, "loss": "dlr"}, "optimises ce, not loss 'dlr'"),
        ({"attack": "cw", "norm": "l2", "loss": "ce"}, "optimises margin, not loss 'ce'"),
    ],
)
def test_unsupported_reasons(fields, reason):
    with pytest.raises(Unsupported, match=reason.replace("(", r"\(").replace(")", r"\)")):
        ADAPTER.translate(spec_for(**fields), 10)


def test_options_override_reach_the_native_class(digits_model, batch):
    x, y = batch
    spec = spec_for("pgd", "linf", eps=0.3, steps=5, options={"eps": 0.05})
    assert ADAPTER.translate(spec, 10).kwargs["eps"] == 0.05
    x_adv, _ = run(spec, digits_model, x, y)
    assert within(perturbation_norms(x, x_adv)["linf"], 0.05).all()


def test_unknown_option_raises_in_check():
    translation = ADAPTER.translate(spec_for("cw", "l2", options={"max_halvings": 3}), 10)
    with pytest.raises(ValueError, match="no parameter max_halvings.*max_halving"):
        ADAPTER.check(translation)


def test_module_import_does_not_import_art():
    code = "import sys, adapters.art_adapter; assert 'art' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[1])
