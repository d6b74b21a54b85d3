"""Model-level metrics (CLEVER, empirical robustness, loss sensitivity) and detectors on the trained digits CNN."""

from __future__ import annotations

import importlib

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from pydantic import ValidationError

from bridge.attacks.adapter import get_adapter
from bridge.attacks.spec import resolve_attack
from bridge.data.dataset import load_split
from bridge.defences import detector as Det
from bridge.models.shared import SharedModel
from bridge.studies.evasion import model_metrics as R

# Small CLEVER settings (about 1 s per sample on one core); radius 2 in L2 is wide for 8x8 digits in [0, 1].
CLEVER = R.CleverConfig(n_samples=4, nb_batches=20, batch_size=5, pool_factor=5, norm="l2", radius=2.0)
SEED = 0


class Scaled(torch.nn.Module):
    """The same network with its logits multiplied by `c`: same decisions, c times the margins and gradients."""

    def __init__(self, net: torch.nn.Module, c: float):
        super().__init__()
        self.net, self.c = net, c

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x) * self.c


def cell(model: SharedModel, toolkit: str, x: torch.Tensor, y: torch.Tensor, **fields) -> torch.Tensor:
    """One attack cell, translated, checked and built as the runner does."""
    spec = resolve_attack({"toolkit": toolkit, **fields})
    adapter = get_adapter(toolkit)
    translation = adapter.translate(spec, model.n_classes)
    adapter.check(translation)
    torch.manual_seed(SEED)
    with model.eval_mode():
        return adapter.build(translation, spec, model)(x, y, None)


@pytest.fixture(scope="module")
def clever(digits_model, digits_batch) -> pd.DataFrame:
    x, y = digits_batch
    return R.clever_table(digits_model, x, y, CLEVER, SEED)


# --- CLEVER ----------------------------------------------------------------------------------------------------------


def test_clever_scores_are_positive_finite_and_capped(clever, digits_model, digits_batch):
    x, y = digits_batch
    assert len(clever) == CLEVER.n_samples and not clever["failed"].any()
    scores = clever["clever_u"].to_numpy()
    # measured 0.14-0.56; a diverged Weibull fit (one class of sample 52 here, redrawn) would give ~1e-8
    assert np.isfinite(scores).all() and (scores > 0.01).all() and (scores <= CLEVER.radius).all()
    index = torch.tensor(clever["index"].tolist())
    assert (digits_model.predict(x[index]).argmax(1) == y[index]).all()  # correctly classified samples only
    assert (clever["target"] != clever["label"]).all()


def test_clever_equals_art_clever_u_where_no_fit_was_redrawn(clever, digits_model, digits_batch):
    """Class by class with the same seeds is ART's clever_u exactly, unless a degenerate fit was redrawn."""
    from art.metrics import clever_u

    art = importlib.import_module("adapters.art_services")
    classifier = art.classifier(digits_model)
    x = digits_batch[0]
    fit = {k: getattr(CLEVER, k) for k in ("nb_batches", "batch_size", "radius", "c_init", "pool_factor")}
    clean = clever[clever["degenerate_fits"] == 0]
    assert len(clean) >= 2
    for row in clean.itertuples():
        np.random.seed([SEED, row.index])
        reference = clever_u(classifier, x[row.index].numpy(), norm=art.ART_NORMS[CLEVER.norm], verbose=False, **fit)
        assert float(reference) == row.clever_u


def test_clever_is_repeatable_and_leaves_numpy_rng_alone(digits_model, digits_batch):
    x, y = digits_batch
    cfg = CLEVER.model_copy(update={"n_samples": 2})
    np.random.seed(123)
    before = np.random.get_state()[1].copy()
    first = R.clever_table(digits_model, x, y, cfg, seed=7)
    assert np.array_equal(np.random.get_state()[1], before)
    pd.testing.assert_frame_equal(first, R.clever_table(digits_model, x, y, cfg, seed=7))


def test_clever_is_invariant_to_the_logit_scale(clever, digits_model, digits_batch):
    """CLEVER is margin / Lipschitz: scaling the logits by 3 scales both, so the scores stay put."""
    x, y = digits_batch
    scaled = SharedModel(Scaled(digits_model.net, 3.0), digits_model.input_shape, digits_model.n_classes)
    again = R.clever_table(scaled, x, y, CLEVER, SEED)
    assert again["index"].tolist() == clever["index"].tolist()
    np.testing.assert_allclose(again["clever_u"], clever["clever_u"], rtol=1e-3)


def test_clever_stays_below_the_distance_deepfool_reaches(clever, digits_model, digits_batch):
    """CLEVER estimates a lower bound on the smallest L2 perturbation that changes the class; DeepFool finds one
    (measured: CLEVER is 0.7-0.85 of DeepFool's distance, in the same order)."""
    x, y = digits_batch
    index = torch.tensor(clever["index"].tolist())
    x_adv = cell(digits_model, "art", x[index], y[index], attack="deepfool", norm="l2", steps=50)
    assert (digits_model.predict(x_adv).argmax(1) != y[index]).all()
    distance = (x_adv - x[index]).flatten(1).norm(dim=1).numpy()
    scores = clever["clever_u"].to_numpy()
    assert (scores < distance).all()
    assert pd.Series(scores).corr(pd.Series(distance), method="spearman") > 0.5


def test_degenerate_fits_are_recognised():
    """A diverged fit puts |loc| = margin / score far above the gradient norms measured in the ball."""
    assert R.degenerate(5e-8, margin=5.0, scale=150.0)
    assert not R.degenerate(0.05, margin=5.0, scale=150.0)
    assert not R.degenerate(2.0, margin=5.0, scale=1.0)  # capped at the radius: |loc| underestimated, not degenerate
    assert R.degenerate(0.0, 5.0, 150.0) and R.degenerate(-0.1, 5.0, 150.0) and R.degenerate(float("nan"), 5.0, 1.0)


# --- empirical robustness and loss sensitivity ----------------------------------------------------------------------


def minimal_fgsm_robustness(model: SharedModel, x: torch.Tensor, eps: float, eps_step: float, norm: str) -> float:
    """The bridge's own minimal FGSM: steps eps_step, 2*eps_step, ... (eps inclusive) along the sign (linf) or the
    unit (l2) loss gradient at the prediction, clipped to [0, 1]; the first that changes the prediction counts.
    Returns mean ||x_adv - x||_p / ||x||_p over the changed samples."""
    with model.eval_mode():
        pred = model(x).argmax(1)
        xg = x.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(F.cross_entropy(model(xg), pred), xg)
    flat = grad.flatten(1)
    direction = grad.sign() if norm == "linf" else (flat / flat.norm(dim=1, keepdim=True)).view_as(grad)
    found = torch.zeros(len(x), dtype=torch.bool)
    x_adv = x.clone()
    for k in range(1, round(eps / eps_step) + 1):
        step = (x + k * eps_step * direction).clamp(0, 1)
        flips = (model.predict(step).argmax(1) != pred) & ~found
        x_adv[flips], found = step[flips], found | flips
    p = float("inf") if norm == "linf" else 2
    ratio = (x_adv - x).flatten(1).norm(p=p, dim=1) / x.flatten(1).norm(p=p, dim=1)
    return ratio[found].mean().item()


@pytest.mark.parametrize(("norm", "eps", "eps_step"), [("linf", 0.3, 0.01), ("l2", 3.0, 0.1)])
def test_empirical_robustness_is_the_minimal_fgsm_ratio(digits_model, digits_batch, norm, eps, eps_step):
    x = digits_batch[0]
    cfg = R.EmpiricalRobustnessConfig(eps=eps, eps_step=eps_step, norm=norm, batch_size=32)
    value = R.empirical_robustness(digits_model, x, cfg)
    assert 0 < value < 1
    assert value == pytest.approx(minimal_fgsm_robustness(digits_model, x, eps, eps_step, norm), rel=1e-5)


def test_empirical_robustness_is_nan_when_no_step_changes_a_prediction(digits_model, digits_batch):
    cfg = R.EmpiricalRobustnessConfig(eps=1e-4, eps_step=1e-4, norm="linf", batch_size=64)
    assert np.isnan(R.empirical_robustness(digits_model, digits_batch[0], cfg))


def test_empirical_robustness_config_checks_the_step():
    with pytest.raises(ValidationError, match="eps_step"):
        R.EmpiricalRobustnessConfig(eps=0.1, eps_step=0.2)
    assert R.EmpiricalRobustnessConfig(eps="8/255", eps_step="1/255").eps == pytest.approx(8 / 255)


def test_loss_sensitivity_is_each_samples_gradient_norm(digits_model, digits_batch):
    """Per sample, not ART's batch call (whose mean loss divides every gradient by the batch size)."""
    x, y = digits_batch
    digits_model.train()
    try:
        values = R.loss_sensitivity(digits_model, x, y)
        assert digits_model.training  # the model's mode is restored around ART's calls
    finally:
        digits_model.eval()
    xg = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(F.cross_entropy(digits_model(xg), y, reduction="sum"), xg)
    expected = grad.flatten(1).norm(dim=1).numpy()
    assert values.shape == (len(x),) and np.isfinite(values).all() and (values > 0).all()
    np.testing.assert_allclose(values, expected, rtol=1e-4)


def test_model_metrics_names_and_values(digits_model, digits_batch):
    x, y = digits_batch
    cfg = R.ModelMetricsConfig(clever=CLEVER.model_copy(update={"n_samples": 1}))
    result = R.compute_model_metrics(digits_model, x, y, cfg)
    expected = {
        "clever_u_mean",
        "clever_u_median",
        "clever_u_min",
        "clever_u_n",
        "clever_u_failed",
        "clever_u_degenerate_fits",
        "clever_u_time_s",
        "empirical_robustness",
        "loss_sensitivity",
        "loss_sensitivity_max",
    }
    assert set(result.metrics) == {f"robustness.{k}" for k in expected}
    assert all(np.isfinite(v) for v in result.metrics.values())
    assert result.metrics["robustness.clever_u_mean"] == result.clever["clever_u"].iloc[0]
    off = R.model_metrics(digits_model, x, y, R.ModelMetricsConfig(clever=None, empirical_robustness=None), "m/")
    assert set(off) == {"m/loss_sensitivity", "m/loss_sensitivity_max"}
    with pytest.raises(ValidationError):
        R.ModelMetricsConfig(clever={"n_samples": 2, "radius": 0.5, "steps": 3})


# --- detectors ------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def attacked(digits_model) -> tuple[torch.Tensor, dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """The digits test split (540) and its adversarial examples at linf 0.2: PGD from torchattacks and ART, FGSM
    from Foolbox; with where each fools the model."""
    test = load_split("digits", "test")
    x, y = test.x, test.y
    adv = {
        "torchattacks": cell(digits_model, "torchattacks", x, y, attack="pgd", norm="linf", eps=0.2, steps=10),
        "art": cell(digits_model, "art", x, y, attack="pgd", norm="linf", eps=0.2, steps=10),
        "foolbox": cell(digits_model, "foolbox", x, y, attack="fgsm", norm="linf", eps=0.2),
    }
    success = {t: digits_model.predict(a).argmax(1) != y for t, a in adv.items()}
    return x, adv, success


def test_detector_trained_on_one_toolkit_detects_every_toolkits_examples(attacked):
    x, adv, success = attacked
    cfg = Det.DetectorConfig(train_toolkit="torchattacks", epochs=10, batch_size=64, lr=1e-3, seed=0, holdout=0.3)
    table = Det.detector_study_on(x, adv, cfg, success).set_index("toolkit")
    assert list(table.index) == ["torchattacks", "art", "foolbox"]
    assert (table["trained_on"] == "torchattacks").all()
    assert (table["n"] == 162).all() and (table["n_clean"] == 162).all()  # round(0.3 * 540) held out
    # measured: detection 1.0 for all three, false positives 0.0, AUC 1.0 (an 8x8 digit's blank background
    # shows a 0.2 perturbation plainly)
    assert table.loc["torchattacks", "detection_rate"] > 0.9
    assert table.loc["art", "detection_rate"] > 0.9 and table.loc["foolbox", "detection_rate"] > 0.8
    assert (table["false_positive_rate"] < 0.1).all() and (table["auc"] > 0.95).all()
    assert (table["n_successful"] > 0.8 * table["n"]).all()
    assert (table["detection_rate_successful"] > 0.8).all()


def test_detector_study_is_deterministic(attacked):
    x, adv, _ = attacked
    cfg = Det.DetectorConfig(train_toolkit="art", epochs=2, seed=3)
    some = {t: a[:120] for t, a in adv.items()}
    first = Det.detector_study_on(x[:120], some, cfg)
    pd.testing.assert_frame_equal(first, Det.detector_study_on(x[:120], some, cfg))


def test_holdout_split_is_disjoint_complete_and_seeded():
    train, held = Det.holdout_split(10, 0.3, seed=1)
    assert len(held) == 3 and len(train) == 7
    assert sorted([*train, *held]) == list(range(10)) and not set(train) & set(held)
    assert np.array_equal(held, Det.holdout_split(10, 0.3, seed=1)[1])
    assert not np.array_equal(held, Det.holdout_split(10, 0.3, seed=2)[1])
    assert [len(i) for i in Det.holdout_split(2, 0.01, seed=0)] == [1, 1]


def test_detector_study_refuses_bad_inputs(attacked):
    x, adv, _ = attacked
    with pytest.raises(ValueError, match="train_toolkit 'foolbox'"):
        Det.detector_study_on(x, {"art": adv["art"]}, Det.DetectorConfig(train_toolkit="foolbox"))
    with pytest.raises(ValueError, match="shape"):
        Det.detector_study_on(x, {"art": adv["art"][:10]}, Det.DetectorConfig(train_toolkit="art"))
    with pytest.raises(ValidationError, match="unknown toolkit"):
        Det.DetectorConfig(train_toolkit="cleverhans")
    with pytest.raises(ValidationError, match="unknown architecture"):
        Det.DetectorConfig(train_toolkit="art", arch="vgg")


def test_auc_counts_ties_half():
    assert Det.auc(np.array([2.0, 3.0]), np.array([1.0, 2.0])) == pytest.approx((1.5 + 2) / 4)
    assert Det.auc(np.array([0.0]), np.array([1.0])) == 0.0
    assert np.isnan(Det.auc(np.array([]), np.array([1.0])))
