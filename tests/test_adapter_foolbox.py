"""Foolbox adapter: every table entry runs for real on the digits CNN and respects bounds, eps and targets."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from adapters.foolbox_adapter import ADAPTER
from bridge.attacks.adapter import Unsupported
from bridge.attacks.spec import resolve_attack
from bridge.models.shared import SharedModel

N = 16
EPS = {"linf": 0.3, "l2": 2.0, "l1": 10.0}

# One cell per table entry (few steps, to stay fast); DeepFool also with its cross-entropy loss and with
# candidates limited to the top 4 classes (the default None means all classes). The decision-based attacks
# (slow: hundreds of queries per sample) run on the first N_DECISION samples only.
N_DECISION = 8
DECISION = {"boundary", "hopskipjump"}
CELLS: list[dict[str, Any]] = [
    *({"attack": "fgsm", "norm": n, "eps": EPS[n]} for n in ("linf", "l2", "l1")),
    *({"attack": "bim", "norm": n, "eps": EPS[n], "steps": 5} for n in ("linf", "l2", "l1")),
    *({"attack": "pgd", "norm": n, "eps": EPS[n], "steps": 5} for n in ("linf", "l2", "l1")),
    {"attack": "mifgsm", "norm": "linf", "eps": 0.3, "steps": 5},
    {"attack": "cw", "norm": "l2", "steps": 30, "step_size": 0.05},
    {"attack": "deepfool", "norm": "l2", "steps": 10},
    {"attack": "deepfool", "norm": "linf", "steps": 10, "candidates": 4},
    {"attack": "deepfool", "norm": "l2", "steps": 10, "candidates": 4, "loss": "ce"},
    {"attack": "ead", "norm": "l1", "steps": 30, "binary_search_steps": 3},
    {"attack": "ead", "norm": "l1", "steps": 30, "binary_search_steps": 3, "decision_rule": "L1"},
    {"attack": "newtonfool", "norm": "l2", "steps": 10},
    {"attack": "boundary", "norm": "l2", "steps": 30},
    *({"attack": "hopskipjump", "norm": n, "steps": 2, "init_evals": 10, "max_evals": 20} for n in ("l2", "linf")),
]
HSJ = {"attack": "hopskipjump", "norm": "l2", "steps": 5, "init_evals": 20, "max_evals": 50}


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


def foolbox_model(model: SharedModel):
    """A Foolbox model of the shared one, for running Foolbox's own classes next to the adapter's."""
    import foolbox

    with model.eval_mode():  # Foolbox warns when wrapping a module in training mode
        return foolbox.PyTorchModel(model, bounds=model.bounds, device=model.device, preprocessing=None)


def test_table_covers_catalogue():
    assert set(ADAPTER.table) == {
        ("fgsm", "linf"), ("fgsm", "l2"), ("fgsm", "l1"), ("bim", "linf"), ("bim", "l2"), ("bim", "l1"),
        ("pgd", "linf"), ("pgd", "l2"), ("pgd", "l1"), ("mifgsm", "linf"), ("cw", "l2"), ("ead", "l1"),
        ("deepfool", "l2"), ("deepfool", "linf"), ("newtonfool", "l2"), ("boundary", "l2"), ("hopskipjump", "l2"),
        ("hopskipjump", "linf"),
    }  # fmt: skip
    assert {(c["attack"], c["norm"]) for c in CELLS} == set(ADAPTER.table)


@pytest.mark.parametrize(
    "cell",
    [
        {"attack": "apgd", "norm": "linf", "eps": 0.1},
        {"attack": "apgdt", "norm": "l2", "eps": 1.0},
        {"attack": "autoattack", "norm": "linf", "eps": 0.1},
        {"attack": "square", "norm": "linf", "eps": 0.1},
        {"attack": "jsma", "norm": "l0", "targeted": "random"},
        {"attack": "cw", "norm": "linf"},
    ],
    ids=lambda c: f"{c['attack']}-{c['norm']}",
)
def test_attacks_foolbox_lacks_are_unsupported(cell):
    with pytest.raises(Unsupported, match=f"foolbox has no {cell['attack']} for norm {cell['norm']}"):
        ADAPTER.translate(resolve_attack({"toolkit": "foolbox", **cell}), 10)


def cell_id(cell: dict[str, Any]) -> str:
    extra = "-L1rule" if cell.get("decision_rule") == "L1" else ""
    return f"{cell['attack']}-{cell['norm']}-{cell.get('loss', 'default')}{extra}"


@pytest.mark.parametrize("cell", CELLS, ids=cell_id)
def test_entry_runs_and_attacks(digits_model, digits_batch, cell):
    n = N_DECISION if cell["attack"] in DECISION else N
    x, y = digits_batch[0][:n], digits_batch[1][:n]
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
    ead = ADAPTER.translate(resolve_attack({"attack": "ead", "toolkit": "foolbox", "norm": "l1", "beta": 0.05}), 10)
    assert ead.native == "EADAttack" and ead.call_kwargs == {"epsilons": None}
    assert ead.kwargs == {
        "binary_search_steps": 5, "steps": 100, "initial_stepsize": 0.01, "confidence": 0.0, "initial_const": 0.01,
        "regularization": 0.05, "decision_rule": "EN", "abort_early": False,
    }  # fmt: skip
    nf = ADAPTER.translate(resolve_attack({"attack": "newtonfool", "toolkit": "foolbox", "norm": "l2"}), 10)
    assert nf.kwargs == {"steps": 50, "stepsize": 0.01} and nf.call_kwargs == {"epsilons": None}
    hsj = ADAPTER.translate(resolve_attack({"attack": "hopskipjump", "toolkit": "foolbox", "norm": "linf"}), 10)
    assert hsj.kwargs["constraint"] == "linf" and hsj.kwargs["max_gradient_eval_steps"] == 1000
    assert hsj.as_dict()["constructor"]["init_attack"] == (
        "LinearSearchBlendedUniformNoiseAttack(distance=None, directions=1000, steps=50)"
    )
    for t in (ead, nf, hsj):
        ADAPTER.check(t)


def test_init_attack_is_foolboxs_default():
    """The explicit init attack is the one Boundary and HopSkipJump build when given none."""
    import foolbox

    default = foolbox.attacks.LinearSearchBlendedUniformNoiseAttack(steps=50)  # as in both attacks' run()
    for attack in ("boundary", "hopskipjump"):
        t = ADAPTER.translate(resolve_attack({"attack": attack, "toolkit": "foolbox", "norm": "l2"}), 10)
        assert vars(t.kwargs["init_attack"]) == vars(default)


@pytest.mark.parametrize(
    "cell",
    [
        {"attack": "pgd", "norm": "linf", "eps": 0.3, "steps": 20},
        {"attack": "cw", "norm": "l2", "steps": 100, "step_size": 0.05},
        {"attack": "ead", "norm": "l1", "steps": 30, "binary_search_steps": 3},
        {"attack": "boundary", "norm": "l2", "steps": 20},
        HSJ,
    ],
    ids=lambda c: c["attack"],
)
def test_targeted_reaches_targets(digits_model, digits_batch, cell):
    n = N_DECISION if cell["attack"] in DECISION else N
    x, y = digits_batch[0][:n], digits_batch[1][:n]
    targets = (y + 1 + torch.randint(0, 9, y.shape, generator=torch.Generator().manual_seed(0))) % 10
    _, x_adv, _ = run_cell(digits_model, x, y, {**cell, "targeted": "random"}, targets)
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
        ({"attack": "fgsm", "norm": "l1", "eps": 5.0, "targeted": "random"}, "no targeted mode"),
        ({"attack": "newtonfool", "norm": "l2", "targeted": "random"}, "no targeted mode"),
        ({"attack": "ead", "norm": "l1", "loss": "ce"}, "not loss 'ce'"),
        ({"attack": "boundary", "norm": "l2", "loss": "ce"}, "not loss 'ce'"),
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


@pytest.mark.parametrize(
    "cell",
    [
        {"attack": "cw", "norm": "l2", "steps": 5, "step_size": 0.01, "initial_const": 0.01},
        {"attack": "ead", "norm": "l1", "steps": 10, "binary_search_steps": 1, "initial_const": 1e-3},
    ],
    ids=lambda c: c["attack"],
)
def test_zero_failures_return_clean_input(digits_model, digits_batch, cell):
    """Foolbox CW and EAD return all-zero images where they find nothing; the adapter returns the clean input.

    The zero image is itself misclassified for most digits, so Foolbox's success flag counts these failures
    as successes; left as they are they would be reported as (huge) successful perturbations.
    """
    import foolbox

    x, y = digits_batch[0][:N], digits_batch[1][:N]
    spec = resolve_attack({"toolkit": "foolbox", **cell})
    t = ADAPTER.translate(spec, 10)
    fmodel = foolbox_model(digits_model)
    with digits_model.eval_mode():
        raw, _, _ = ADAPTER.native_class(t.native)(**t.kwargs)(
            fmodel, x, foolbox.criteria.Misclassification(y), epsilons=None
        )
    zero = (raw.flatten(1) == 0).all(1)
    assert zero.sum() >= N // 2  # the defect, in Foolbox itself
    _, x_adv, _ = run_cell(digits_model, x, y, cell)
    failed = digits_model.predict(x_adv).argmax(1) == y
    assert failed.sum() >= N // 2
    assert torch.equal(x_adv[failed], x[failed])
    assert not (x_adv.flatten(1) == 0).all(1).any()


def test_newtonfool_no_nan(digits_model, digits_batch):
    """Foolbox NewtonFool turns a sample into NaN once its gradient underflows to 0 (0/0); the adapter does not."""
    import foolbox

    x, y = digits_batch[0][:N], digits_batch[1][:N]
    cell = {"attack": "newtonfool", "norm": "l2", "steps": 5}
    spec = resolve_attack({"toolkit": "foolbox", **cell})
    t = ADAPTER.translate(spec, 10)
    fmodel = foolbox_model(digits_model)
    with digits_model.eval_mode():
        raw = foolbox.attacks.NewtonFoolAttack(**t.kwargs).run(fmodel, x, foolbox.criteria.Misclassification(y))
    nan = raw.flatten(1).isnan().any(1)
    assert nan.any()  # the defect, in Foolbox itself
    _, x_adv, _ = run_cell(digits_model, x, y, cell)
    assert x_adv.isfinite().all()
    assert torch.equal(x_adv[~nan], raw[~nan])  # elsewhere the adapter's class is Foolbox's, step for step
    assert (digits_model.predict(x_adv[nan]).argmax(1) != y[nan]).all()  # NaN samples were already adversarial


def test_hopskipjump_gradient_is_per_sample(digits_model, digits_batch):
    """Foolbox normalises HSJ's gradient estimate over the batch (per-sample norms < 1); the adapter's is unit."""
    import eagerpy as ep
    import foolbox

    from adapters.foolbox_adapter import _patched

    x, y = digits_batch[0][:N_DECISION], digits_batch[1][:N_DECISION]
    criterion = foolbox.criteria.Misclassification(y)
    fmodel = foolbox_model(digits_model)
    is_adv = foolbox.attacks.base.get_is_adversarial(criterion, fmodel)
    init = ADAPTER.translate(resolve_attack({**HSJ, "toolkit": "foolbox"}), 10).kwargs["init_attack"]
    delta = ep.astensor(torch.full((len(x),), 0.1))
    classes = {"foolbox": foolbox.attacks.HopSkipJumpAttack}
    classes["adapter"] = _patched("HopSkipJumpAttack", classes["foolbox"])
    norms = {}
    with digits_model.eval_mode():
        start = ep.astensor(init.run(fmodel, x, criterion))
        for name, cls in classes.items():
            torch.manual_seed(0)
            grad = cls(constraint="l2").approximate_gradients(is_adv, start, 20, delta).raw
            norms[name] = grad.flatten(1).norm(dim=1)
    assert (norms["foolbox"] < 0.9).all() and torch.allclose(norms["foolbox"].square().sum(), torch.tensor(1.0))
    assert torch.allclose(norms["adapter"], torch.ones(len(x)))


@pytest.mark.filterwarnings("ignore:LinearSearchBlendedUniformNoiseAttack failed to draw")
def test_decision_init_failures_stay_per_sample(digits_model, digits_batch):
    """An init attack that fails on some samples makes Foolbox raise for the whole batch; the adapter returns
    those samples unchanged and attacks the rest. Here the init draws only 20 noise images, which the model
    puts in a few classes, so targets among the rare classes get no start."""
    import foolbox

    x, y = digits_batch[0][:N_DECISION], digits_batch[1][:N_DECISION]
    targets = (y + 1 + torch.randint(0, 9, y.shape, generator=torch.Generator().manual_seed(0))) % 10
    weak = foolbox.attacks.LinearSearchBlendedUniformNoiseAttack(distance=None, directions=20, steps=50)
    cell = {"attack": "boundary", "norm": "l2", "steps": 10, "targeted": "random", "options": {"init_attack": weak}}
    spec = resolve_attack({"toolkit": "foolbox", **cell})
    t = ADAPTER.translate(spec, 10)
    torch.manual_seed(0)
    with digits_model.eval_mode(), pytest.raises(ValueError, match="init_attack failed"):
        fmodel = foolbox_model(digits_model)
        criterion = foolbox.criteria.TargetedMisclassification(targets)
        ADAPTER.native_class(t.native)(**t.kwargs)(fmodel, x, criterion, epsilons=None)
    torch.manual_seed(0)
    _, x_adv, _ = run_cell(digits_model, x, y, cell, targets)
    hit = digits_model.predict(x_adv).argmax(1) == targets
    assert 0 < hit.sum() < len(x), hit
    assert torch.equal(x_adv[~hit], x[~hit])


@pytest.mark.parametrize(("cell", "max_queries"), [(HSJ, 60), ({"attack": "boundary", "norm": "l2", "steps": 100}, 5)])
def test_decision_attacks_stop_at_query_budget(digits_model, digits_batch, cell, max_queries):
    """With a budget Foolbox HSJ loops forever (every answer past it is "not adversarial") and both attacks'
    init can fail; the adapter stops at the budget and keeps the closest confirmed adversarial per sample."""
    x, y = digits_batch[0][:N_DECISION], digits_batch[1][:N_DECISION]
    spec = resolve_attack({"toolkit": "foolbox", **cell, "max_queries": max_queries})
    t = ADAPTER.translate(spec, 10)
    with digits_model.eval_mode(), digits_model.counting() as counters:
        with digits_model.query_budget(x, y, max_queries):
            x_adv = ADAPTER.build(t, spec, digits_model)(x, y, None)
    assert counters.forward_samples <= max_queries * len(x) and counters.queries_blocked == 0
    adv = digits_model.predict(x_adv).argmax(1) != y
    assert adv.sum() >= len(x) // 2 and torch.equal(x_adv[~adv], x[~adv])


def test_hopskipjump_refuses_other_bounds():
    """Foolbox HSJ clips every proposal to [0, 1] whatever the model's bounds: the build refuses other bounds."""
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
    model = SharedModel(net, (1, 8, 8), 10, bounds=(-1.0, 1.0))
    spec = resolve_attack({"attack": "hopskipjump", "toolkit": "foolbox", "norm": "l2"})
    with pytest.raises(Unsupported, match=r"clips to \[0, 1\]"):
        ADAPTER.build(ADAPTER.translate(spec, 10), spec, model)


@pytest.mark.parametrize(
    "cell",
    [
        {"native": "DDNAttack", "options": {"steps": 10, "init_epsilon": 1.0}},
        {"native": "L2FMNAttack", "options": {"steps": 10}},
        {"native": "L2FMNAttack", "eps": 1.0, "options": {"steps": 10}},
        {"native": "LinfProjectedGradientDescentAttack", "eps": 0.3, "options": {"steps": 10, "rel_stepsize": 0.25}},
    ],
    ids=lambda c: f"{c['native']}-eps{c.get('eps')}",
)
def test_native_passthrough(digits_model, digits_batch, cell):
    x, y = digits_batch[0][:N], digits_batch[1][:N]
    norm = "linf" if cell["native"].startswith("Linf") else "l2"
    spec, x_adv, _ = run_cell(digits_model, x, y, {"attack": "native", "norm": norm, **cell})
    t = ADAPTER.translate(spec, 10)
    assert t.passthrough and t.kwargs == cell["options"] and t.call_kwargs == {"epsilons": cell.get("eps")}
    assert x_adv.dtype == torch.float32 and x_adv.shape == x.shape
    if spec.eps is not None:
        assert (norms(x_adv - x, norm) <= spec.eps * (1 + 1e-6) + 1e-7).all()
    assert accuracy(digits_model, x_adv, y) <= 0.5 * accuracy(digits_model, x, y)


@pytest.mark.parametrize(
    ("cell", "message"),
    [
        ({"native": "DDNAttack", "options": {"bogus": 1}}, "no parameter bogus"),
        ({"native": "NoSuchAttack"}, "foolbox has no attack class 'NoSuchAttack'"),
        ({"native": "base"}, "foolbox has no attack class 'base'"),
        ({"native": "LinfProjectedGradientDescentAttack"}, "fixed-epsilon attack: it needs eps"),
    ],
)
def test_native_passthrough_checked(cell, message):
    spec = resolve_attack({"attack": "native", "toolkit": "foolbox", "norm": "l2", **cell})
    with pytest.raises(ValueError, match=message):
        ADAPTER.check(ADAPTER.translate(spec, 10))
