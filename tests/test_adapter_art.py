"""The ART adapter on the trained digits CNN: every table entry runs for real and keeps its contract."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from adapters import art_adapter
from adapters.art_adapter import ADAPTER, MultiTargeted
from bridge.attacks.adapter import Unsupported
from bridge.attacks.spec import resolve_attack
from bridge.models.shared import SharedModel
from bridge.studies.evasion.cell import seed_everything
from bridge.studies.evasion.metrics import perturbation_norms, within

N = 16

# One quick but effective setting per table entry (eps: linf 0.3, l2 2.0, l1 8.0).
CASES: dict[tuple[str, str], dict[str, Any]] = {
    ("fgsm", "linf"): {"eps": 0.3},
    ("fgsm", "l2"): {"eps": 2.0},
    ("fgsm", "l1"): {"eps": 8.0},
    ("bim", "linf"): {"eps": 0.3, "steps": 5},
    ("pgd", "linf"): {"eps": 0.3, "steps": 5},
    ("pgd", "l2"): {"eps": 2.0, "steps": 5},
    ("pgd", "l1"): {"eps": 8.0, "steps": 5},
    ("mifgsm", "linf"): {"eps": 0.3, "steps": 5},
    ("apgd", "linf"): {"eps": 0.3, "steps": 5},
    ("apgd", "l2"): {"eps": 2.0, "steps": 5, "loss": "dlr"},
    ("apgd", "l1"): {"eps": 8.0, "steps": 5},
    ("apgdt", "linf"): {"eps": 0.3, "steps": 5},
    ("apgdt", "l2"): {"eps": 2.0, "steps": 5},
    ("autoattack", "linf"): {"eps": 0.3},  # sub-attack sizes cut by `small_autoattack`
    ("autoattack", "l2"): {"eps": 2.0},
    ("square", "linf"): {"eps": 0.3, "max_queries": 100},
    ("square", "l2"): {"eps": 2.0, "max_queries": 100},
    ("cw", "l2"): {"steps": 5, "binary_search_steps": 1},
    ("cw", "linf"): {"steps": 5, "step_size": 0.2, "initial_const": 10.0},
    ("ead", "l1"): {"steps": 10, "binary_search_steps": 1, "initial_const": 1.0},
    ("deepfool", "l2"): {"steps": 10},
    ("jsma", "l0"): {"targeted": "random", "gamma": 0.5},
    ("newtonfool", "l2"): {"steps": 10, "step_size": 0.1},
    ("boundary", "l2"): {"steps": 5},
    ("hopskipjump", "l2"): {"steps": 2, "init_evals": 10, "max_evals": 50},
    ("hopskipjump", "linf"): {"steps": 2, "init_evals": 10, "max_evals": 50},
}
# Entries that run one sample at a time or query a lot: the contract test gives them fewer samples.
FEW = 4
SLOW = {("cw", "linf"), ("boundary", "l2"), ("hopskipjump", "l2"), ("hopskipjump", "linf")}


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


@pytest.fixture
def small_autoattack(monkeypatch):
    """AutoAttack's standard sizes (100 APGD steps, 5000 Square queries) cut for tests: constants only."""
    monkeypatch.setattr(art_adapter, "AA_APGD_STEPS", 5)
    monkeypatch.setattr(art_adapter, "AA_SQUARE_QUERIES", 50)


def test_cases_cover_the_table():
    assert set(CASES) == set(ADAPTER.table)


@pytest.mark.parametrize(("attack", "norm"), sorted(CASES))
@pytest.mark.filterwarnings("ignore:invalid value encountered in divide")  # ART's L2 Square on 8x8 inputs, see notes
def test_entry_runs_and_keeps_contract(attack, norm, digits_model, batch, small_autoattack):
    x, y = batch
    if (attack, norm) in SLOW:
        x, y = x[:FEW], y[:FEW]
    spec = spec_for(attack, norm, **CASES[attack, norm])
    assert ADAPTER.translate(spec, 10).as_dict()["native_class"] == ADAPTER.table[attack, norm].native
    targets = (y + 1) % 10 if spec.targeted != "none" else None
    seed_everything(0)
    x_adv, counters = run(spec, digits_model, x, y, targets)

    assert x_adv.dtype == torch.float32 and x_adv.device == digits_model.device and x_adv.shape == x.shape
    assert digits_model.device == torch.device("cpu")  # ART did not move the model
    lo, hi = digits_model.bounds
    assert x_adv.min() >= lo and x_adv.max() <= hi
    if spec.kind == "fixed":
        assert within(perturbation_norms(x, x_adv)[norm], spec.eps).all()
    assert counters.forward_calls > 0  # ART calls the SharedModel itself
    assert (counters.backward_calls > 0) == (spec.access in ("gradient", "mixed"))
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
        ({"attack": "apgd", "norm": "linf", "eps": 0.1, "rho": 0.5}, "hard-codes rho=0.75"),
        ({"attack": "apgdt", "norm": "l2", "eps": 0.1, "rho": 0.9}, "hard-codes rho=0.75"),
        ({"attack": "apgdt", "norm": "linf", "eps": 0.1, "loss": "ce"}, "optimises dlr, not loss 'ce'"),
        ({"attack": "apgdt", "norm": "linf", "eps": 0.1, "targeted": "random"}, "has no targeted mode"),
        ({"attack": "autoattack", "norm": "linf", "eps": 0.1, "targeted": "random"}, "AutoAttack has no targeted"),
        ({"attack": "square", "norm": "linf", "eps": 0.1, "targeted": "random"}, "SquareAttack has no targeted"),
        ({"attack": "square", "norm": "l2", "eps": 0.1, "p_init": 1.0}, "needs 0 < p_init < 1"),
        ({"attack": "cw", "norm": "linf", "binary_search_steps": 3}, "no binary search over c"),
        ({"attack": "cw", "norm": "linf", "targeted": "random"}, "CarliniLInfMethod has no targeted mode"),
        ({"attack": "jsma", "norm": "l0", "targeted": "random", "gamma": 2.0}, "needs 0 < gamma <= 1"),
        ({"attack": "newtonfool", "norm": "l2", "targeted": "random"}, "NewtonFool has no targeted mode"),
        ({"attack": "boundary", "norm": "l2", "step_adaptation": 0.9}, "step_adaptation must be > 1"),
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


def test_fgsm_l1_moves_one_input(digits_model, batch):
    """ART's L1 FGM is the exact L1 steepest step: one input per sample, by eps, clipped to the bounds."""
    x, y = batch
    x_adv, _ = run(spec_for("fgsm", "l1", eps=0.5), digits_model, x, y)
    norms = perturbation_norms(x, x_adv)
    assert (norms["l0"] <= 1).all() and within(norms["l1"], 0.5).all()


def test_apgd_translation():
    kwargs = ADAPTER.translate(spec_for("apgd", "l2", eps=0.5, restarts=3, loss="dlr"), 10).kwargs
    assert kwargs["eps_step"] == 1.0  # the catalogue's initial step, 2 * eps
    assert kwargs["nb_random_init"] == 3 and kwargs["max_iter"] == 100 and kwargs["norm"] == 2
    assert kwargs["loss_type"] == "difference_logits_ratio" and kwargs["targeted"] is False
    targeted = ADAPTER.translate(spec_for("apgd", "linf", eps=0.1, targeted="random"), 10).kwargs
    assert targeted["loss_type"] == "cross_entropy" and targeted["targeted"] is True


def test_apgdt_needs_enough_classes():
    spec = spec_for("apgdt", "linf", eps=0.1)  # n_target_classes defaults to 9
    assert ADAPTER.translate(spec, 10).kwargs["targeted"] is True
    with pytest.raises(Unsupported, match="n_target_classes=9 needs at least 10 classes; the model has 5"):
        ADAPTER.translate(spec, 5)
    assert ADAPTER.translate(spec_for("apgdt", "linf", eps=0.1, n_target_classes=4), 5)


class RecordingAPGD:
    """Stands in for ART's targeted APGD: records the targets it is given; `fool` says which samples it fools."""

    def __init__(self, fool):
        self.fool = fool
        self.calls: list[tuple[np.ndarray, np.ndarray]] = []

    def generate(self, x, y):
        self.calls.append((x.copy(), np.asarray(y).copy()))
        out = x.copy()
        out[self.fool(len(self.calls), x)] = 0.0  # a blank image: the digits CNN does not call it the label
        return out


def test_apgdt_targets_the_most_likely_wrong_classes_in_order(digits_model, batch):
    x, y = batch
    logits = digits_model.predict(x)
    correct = (logits.argmax(1) == y).numpy()
    assert not correct.all()
    apgd = RecordingAPGD(lambda k, xs: np.zeros(len(xs), dtype=bool))  # never succeeds
    x_adv = MultiTargeted(apgd, digits_model, 3).generate(x.numpy(), y.numpy())
    assert np.array_equal(x_adv, x.numpy())  # never fooled: the clean input comes back
    wrong = logits.clone()
    wrong[torch.arange(len(y)), y] = -torch.inf
    ranked = wrong.argsort(1, descending=True).numpy()
    assert len(apgd.calls) == 3
    for k, (xs, targets) in enumerate(apgd.calls):
        assert np.array_equal(xs, x.numpy()[correct])  # only samples the model still classifies correctly
        assert np.array_equal(targets, ranked[correct, k])  # the (k+1)-th most likely wrong class


def test_apgdt_keeps_the_first_success_the_model_confirms(digits_model, batch):
    x, y = batch
    blank = digits_model.predict(torch.zeros_like(x[:1])).argmax(1).item()
    fooled = (digits_model.predict(x).argmax(1) == y) & (y != blank)
    apgd = RecordingAPGD(lambda k, xs: np.ones(len(xs), dtype=bool) if k == 1 else np.zeros(len(xs), dtype=bool))
    x_adv = MultiTargeted(apgd, digits_model, 9).generate(x.numpy(), np.eye(10)[y.numpy()])  # one-hot, as ART passes
    assert (x_adv[fooled.numpy()] == 0).all() and np.array_equal(x_adv[~fooled.numpy()], x.numpy()[~fooled.numpy()])
    second = apgd.calls[1][0] if len(apgd.calls) > 1 else np.empty((0,))
    assert len(second) == int(((digits_model.predict(x).argmax(1) == y) & (y == blank)).sum())


def test_autoattack_translation_is_standard_minus_fab():
    translation = ADAPTER.translate(spec_for("autoattack", "linf", eps=0.03), 10)
    kwargs = translation.kwargs
    assert kwargs["targeted"] is False and kwargs["parallel_pool_size"] == 0 and kwargs["estimator_orig"] is None
    apgd_ce, apgd_t, square = kwargs["attacks"]
    assert [a["class"] for a in kwargs["attacks"]] == ["AutoProjectedGradientDescent"] * 2 + ["SquareAttack"]
    assert apgd_ce["kwargs"]["loss_type"] == "cross_entropy" and apgd_ce["kwargs"]["targeted"] is False
    assert apgd_t["kwargs"]["loss_type"] == "difference_logits_ratio" and apgd_t["kwargs"]["targeted"] is True
    assert apgd_t["n_target_classes"] == 9
    for apgd in (apgd_ce, apgd_t):
        assert apgd["kwargs"]["max_iter"] == 100 and apgd["kwargs"]["nb_random_init"] == 1
        assert apgd["kwargs"]["eps_step"] == pytest.approx(0.06)
    assert square["kwargs"]["max_iter"] == 5000 and square["kwargs"]["p_init"] == 0.8
    assert square["kwargs"]["nb_restarts"] == 1
    for sub in kwargs["attacks"]:  # every sub-attack parameter explicit too
        ADAPTER.check(type(translation)("art", sub["class"], sub["kwargs"], {}, ""))
    assert "minus FAB-T" in translation.notes


def test_art_autoattack_runs_apgd_ce_then_apgd_t_then_square(digits_model, batch, small_autoattack):
    """ART 1.20.1's AutoAttack.generate imports `multiprocess` even with parallel_pool_size=0; it must run."""
    from art.attacks.evasion import AutoProjectedGradientDescent, SquareAttack

    x, y = batch
    translation = ADAPTER.translate(spec_for("autoattack", "linf", eps=0.1), 10)
    native = ADAPTER._autoattack(translation, digits_model)
    assert [type(a) for a in native.attacks] == [AutoProjectedGradientDescent, MultiTargeted, SquareAttack]
    seed_everything(0)
    with digits_model.eval_mode():
        x_adv = torch.as_tensor(native.generate(x.numpy(), y=y.numpy()))
    assert within(perturbation_norms(x, x_adv)["linf"], 0.1).all()
    assert {0, 1} <= set(native.best_attacks.tolist())  # APGD-CE fooled some, APGD-T some of the rest
    assert accuracy(digits_model, x_adv, y) < accuracy(digits_model, x, y)


def test_square_translation():
    kwargs = ADAPTER.translate(spec_for("square", "l2", eps=1.0, max_queries=300, restarts=2), 10).kwargs
    assert kwargs["max_iter"] == 300 and kwargs["nb_restarts"] == 2 and kwargs["p_init"] == 0.8
    assert kwargs["loss"] is None and kwargs["adv_criterion"] is None  # ART's margin loss and argmax != label


def test_cw_linf_targeted_defect_is_refused(digits_model, batch):
    """ART's CarliniLInfMethod keeps a point when prediction != y, also when y holds targets."""
    from art.attacks.evasion import CarliniLInfMethod

    x, y = batch[0][:2], batch[1][:2]
    targets = (y + 1) % 10
    attack = CarliniLInfMethod(
        ADAPTER.classifier(digits_model),
        targeted=True,
        learning_rate=0.2,
        max_iter=3,
        initial_const=10.0,
        verbose=False,
    )
    x_adv = torch.as_tensor(attack.generate(x.numpy(), y=targets.numpy()))
    missed = digits_model.predict(x_adv).argmax(1) != targets
    assert (missed & (x_adv != x).flatten(1).any(1)).any()  # changed, yet not classified as the target
    with pytest.raises(Unsupported, match="has no targeted mode"):
        ADAPTER.translate(spec_for("cw", "linf", targeted="random"), 10)
    assert "targeted mode keeps a point when the prediction differs" in ADAPTER.table["cw", "linf"].notes


def test_ead_refuses_other_bounds():
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
    model = SharedModel(net, (1, 8, 8), 10, bounds=(-1.0, 1.0))
    spec = spec_for("ead", "l1")
    with pytest.raises(Unsupported, match=r"clips to \[0, 1\]"):
        ADAPTER.build(ADAPTER.translate(spec, 10), spec, model)


def test_jsma_aims_at_the_bridge_targets(digits_model, batch):
    """ART's SaliencyMapMethod treats y as targets (and draws random ones for y=None): it gets the bridge's."""
    x, y = batch
    targets = (y + 3) % 10
    spec = spec_for("jsma", "l0", targeted="least_likely", gamma=0.5)
    x_adv, _ = run(spec, digits_model, x, y, targets)
    assert (digits_model.predict(x_adv).argmax(1) == targets).float().mean() >= 0.75
    with pytest.raises(ValueError, match="needs targets"):
        run(spec, digits_model, x, y, None)


def test_newtonfool_sees_probabilities_and_skips_misclassified(digits_model, batch):
    x, y = batch
    probs = ADAPTER.classifier(digits_model, "NewtonFool").predict(x.numpy())
    assert np.allclose(probs.sum(1), 1.0, atol=1e-5)
    wrong = digits_model.predict(x).argmax(1) != y
    x_adv, counters = run(spec_for("newtonfool", "l2", steps=10, step_size=0.1), digits_model, x, y)
    assert counters.backward_calls > 0  # the view still calls the SharedModel, so its hooks fire
    assert torch.equal(x_adv[wrong], x[wrong])


def test_boundary_float64_defect_is_handled(digits_model, batch):
    """ART's Boundary and HopSkipJump send float64 arrays to the model; the adapter casts them to float32."""
    from art.attacks.evasion import BoundaryAttack

    x, y = batch[0][:FEW], batch[1][:FEW]
    raw = BoundaryAttack(ADAPTER.classifier(digits_model), targeted=False, max_iter=1, verbose=False)
    with pytest.raises(RuntimeError, match="double"):
        raw.generate(x.numpy(), y=y.numpy())
    seed_everything(0)
    x_adv, counters = run(spec_for("boundary", "l2", steps=3), digits_model, x, y)
    assert counters.forward_samples > 0 and counters.backward_calls == 0
    assert (digits_model.predict(x_adv).argmax(1) != y).all()


def test_boundary_translation_is_explicit():
    kwargs = ADAPTER.translate(spec_for("boundary", "l2"), 10).kwargs
    assert kwargs["targeted"] is False  # ART's default, True, would aim at the true labels
    assert kwargs["step_adapt"] == pytest.approx(1 / 1.5)
    assert ADAPTER.translate(spec_for("boundary", "l2", targeted="random"), 10).kwargs["targeted"] is True


def test_decision_attacks_are_reproducible(digits_model, batch):
    """ART draws their first adversarial point unseeded; the adapter draws it from the cell's seed."""
    from art.attacks.evasion import BoundaryAttack

    x, y = batch[0][:FEW], batch[1][:FEW]
    raw = BoundaryAttack(ADAPTER.classifier(digits_model, "BoundaryAttack"), targeted=False, max_iter=0, verbose=False)
    starts = []
    for _ in range(2):
        seed_everything(0)
        starts.append(raw.generate(x.numpy(), y=y.numpy()))
    assert not np.array_equal(*starts)  # ART alone: the same seed, another start
    spec = spec_for("boundary", "l2", steps=2)
    results = []
    for _ in range(2):
        seed_everything(0)
        results.append(run(spec, digits_model, x, y)[0])
    assert torch.equal(*results)


def test_targeted_hopskipjump_reaches_targets(digits_model, batch):
    x, y = batch[0][:FEW], batch[1][:FEW]
    targets = (y + 1) % 10
    spec = spec_for("hopskipjump", "l2", steps=2, init_evals=10, max_evals=50, targeted="random")
    seed_everything(0)
    x_adv, _ = run(spec, digits_model, x, y, targets)
    hit = digits_model.predict(x_adv).argmax(1) == targets
    unchanged = (x_adv == x).flatten(1).all(1)  # no uniform draw in init_size was classified as the target
    assert (hit | unchanged).all() and hit.sum() >= FEW // 2


def test_native_passthrough_runs_an_art_class(digits_model, batch):
    """`attack: native` builds ART's SimBA (it needs probabilities, so it gets the softmax view)."""
    x, y = batch[0][:FEW], batch[1][:FEW]
    options = {"attack": "px", "max_iter": 200, "epsilon": 0.2, "verbose": False}
    spec = resolve_attack({"attack": "native", "toolkit": "art", "norm": "l2", "native": "SimBA", "options": options})
    translation = ADAPTER.translate(spec, 10)
    # SimBA defaults to targeted=False itself; the bridge writes the spec's mode explicitly all the same
    assert translation.passthrough and translation.kwargs == {**options, "targeted": False}
    seed_everything(0)
    x_adv, counters = run(spec, digits_model, x, y)
    assert x_adv.dtype == torch.float32 and counters.forward_samples > 0
    assert accuracy(digits_model, x_adv, y) <= accuracy(digits_model, x, y) - 0.5


@pytest.mark.parametrize(
    ("native", "options", "error"),
    [
        ("SimBA", {"max_iters": 10}, "no parameter max_iters; it takes: .*max_iter"),
        ("FAB", {}, "art has no attack class 'FAB'"),
    ],
)
def test_native_passthrough_checks_names(native, options, error):
    spec = resolve_attack({"attack": "native", "toolkit": "art", "norm": "l2", "native": native, "options": options})
    with pytest.raises(ValueError, match=error):
        ADAPTER.check(ADAPTER.translate(spec, 10))


def test_module_import_does_not_import_art():
    code = "import sys, adapters.art_adapter; assert 'art' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[1])
