"""Model-level robustness metrics per shared model (the `robustness:` section).

ART's CLEVER (untargeted), empirical robustness (minimal FGSM) and loss sensitivity, on the estimator the ART
adapter builds around the SharedModel. The bridge picks the samples, seeds every random draw, rejects CLEVER's
degenerate Weibull fits (ART 1.20.1's fit sometimes diverges and returns ~0) and aggregates.

ART is reached only through `adapters.art_services`, imported when a metric is computed.
"""

from __future__ import annotations

import importlib
import time
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
from pydantic import Field, NonNegativeInt, PositiveInt, model_validator

from bridge.attacks.spec import Budget
from bridge.core.schema import Strict
from bridge.models.shared import SharedModel

Norm = Literal["l1", "l2", "linf"]
DUAL = {"l1": float("inf"), "l2": 2.0, "linf": 1.0}  # the norm a p-norm perturbation's gradient is measured in

# A CLEVER_t score is margin / |loc|, loc being the fitted location of the (reversed) Weibull of the maximum gradient
# norms, which should sit near the largest gradient norm in the sampling ball. ART's MLE fit sometimes diverges
# (shape and |loc| ~ 1e8, score ~ 1e-8), or lands an order of magnitude off (digits: a score of 0.02 where a redraw
# gives 0.30); a fit is called degenerate when |loc| exceeds this many times the largest
# gradient norm the bridge itself measures in the ball, or the score is not positive and finite.
DEGENERATE_FACTOR = 10.0
REFERENCE_POINTS = 16  # random points of the ball (plus the sample itself) where the bridge measures gradients

# ART's minimal FGM search adds eps_step to a running eps while it is <= eps, so eps = 0.3, eps_step = 0.01 reaches
# 0.30000000000000004 and skips its last level; ART gets eps + EPS_SLACK * eps_step to keep eps itself a level.
EPS_SLACK = 1e-6

CLEVER_COLUMNS = ["index", "label", "clever_u", "target", "degenerate_fits", "failed"]


class CleverConfig(Strict):
    """CLEVER untargeted (`clever_u`) on `n_samples` correctly classified samples (about 1 s each for the digits
    small_cnn on one CPU core at the defaults). `radius` is in the data's units and caps every score."""

    n_samples: PositiveInt = 5
    nb_batches: PositiveInt = 50  # maxima drawn from the gradient pool, fitted by the reverse Weibull
    batch_size: PositiveInt = 10  # gradients per maximum
    radius: float = Field(default=2.0, gt=0)
    norm: Norm = "l2"
    pool_factor: PositiveInt = 10  # the pool holds pool_factor * batch_size random points of the ball
    c_init: float = Field(default=1.0, gt=0)  # the Weibull shape the fit starts from
    retries: NonNegativeInt = 2  # fresh draws for a class whose fit is degenerate before the sample counts as failed


class EmpiricalRobustnessConfig(Strict):
    """ART's empirical robustness with FGSM: the smallest of the steps eps_step, 2*eps_step, ... up to eps that
    changes the prediction, relative to the input's norm, averaged over the samples some step changes."""

    eps: Budget = Field(default=0.3, gt=0)
    eps_step: Budget = Field(default=0.01, gt=0)
    norm: Norm = "linf"
    batch_size: PositiveInt = 128

    @model_validator(mode="after")
    def _step_within_eps(self) -> EmpiricalRobustnessConfig:
        if self.eps_step > self.eps:
            raise ValueError(f"eps_step ({self.eps_step}) must not exceed eps ({self.eps})")
        return self


class ModelMetricsConfig(Strict):
    """Which model-level metrics to compute; `null` leaves one out. `seed` drives CLEVER's samples and draws."""

    clever: CleverConfig | None = CleverConfig()
    empirical_robustness: EmpiricalRobustnessConfig | None = EmpiricalRobustnessConfig()
    loss_sensitivity: bool = True
    seed: int = 0


@dataclass(frozen=True)
class ModelMetrics:
    """The aggregate metrics (MLflow names) and CLEVER's per-sample table (empty when CLEVER is off)."""

    metrics: dict[str, float]
    clever: pd.DataFrame


def _art() -> Any:
    return importlib.import_module("adapters.art_services")


# --- CLEVER --------------------------------------------------------------------------------------------------------


def _ball_points(x: torch.Tensor, radius: float, norm: Norm, n: int, generator: torch.Generator) -> torch.Tensor:
    """x and n random points of its `norm` ball of `radius` (not clipped: only a gradient scale is wanted)."""
    shape = (n, *x.shape)
    if norm == "linf":
        delta = (torch.rand(shape, generator=generator) * 2 - 1) * radius
    else:
        direction = torch.randn(shape, generator=generator)
        direction /= direction.flatten(1).norm(p=1 if norm == "l1" else 2, dim=1).view(-1, *[1] * x.dim())
        delta = direction * radius * torch.rand((n, *[1] * x.dim()), generator=generator)
    return torch.cat([x[None], x[None] + delta.to(x.device)])


def _margin_scale(
    model: SharedModel, x: torch.Tensor, pred: int, cfg: CleverConfig, generator: torch.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Per class j: the logit margin z_pred - z_j at x, and the largest dual norm of its input gradient over x and
    REFERENCE_POINTS random points of the ball (the scale CLEVER's Weibull location should be near)."""
    points = _ball_points(x, cfg.radius, cfg.norm, REFERENCE_POINTS, generator).requires_grad_(True)
    with torch.enable_grad():
        logits = model(points)
        margins = (logits[0, pred] - logits[0]).detach().cpu().numpy()
        scales = np.zeros(model.n_classes)
        for j in range(model.n_classes):
            if j == pred:
                continue
            (grad,) = torch.autograd.grad((logits[:, pred] - logits[:, j]).sum(), points, retain_graph=True)
            scales[j] = grad.flatten(1).norm(p=DUAL[cfg.norm], dim=1).max().item()
    return margins, scales


def degenerate(score: float, margin: float, scale: float) -> bool:
    """Whether a CLEVER_t score comes from a diverged Weibull fit (see DEGENERATE_FACTOR)."""
    if not np.isfinite(score) or score <= 0:
        return True
    return margin / score > DEGENERATE_FACTOR * scale


def _clever_sample(
    art: Any, classifier: Any, model: SharedModel, x: torch.Tensor, pred: int, cfg: CleverConfig, seeds: list[int]
) -> tuple[dict[int, float], int, bool]:
    """One sample's CLEVER_t per class (ART's clever_u order and draws), degenerate fits redrawn.

    Returns (scores by class, degenerate fits met, whether one is left)."""
    fit = {k: getattr(cfg, k) for k in ("nb_batches", "batch_size", "radius", "norm", "c_init", "pool_factor")}
    margins, scales = _margin_scale(model, x, pred, cfg, torch.Generator().manual_seed(seeds[0]))
    sample = x.detach().cpu().numpy()
    np.random.seed(seeds)
    scores = {j: art.clever_targeted(classifier, sample, j, **fit) for j in range(model.n_classes) if j != pred}
    bad = 0
    for j in scores:
        for attempt in range(1, cfg.retries + 1):
            if not degenerate(scores[j], margins[j], scales[j]):
                break
            bad += 1
            np.random.seed([*seeds, j, attempt])
            scores[j] = art.clever_targeted(classifier, sample, j, **fit)
    left = [j for j, s in scores.items() if degenerate(s, margins[j], scales[j])]
    return scores, bad + len(left), bool(left)


def clever_table(model: SharedModel, x: torch.Tensor, y: torch.Tensor, cfg: CleverConfig, seed: int) -> pd.DataFrame:
    """CLEVER_u per sample: ART's `clever_t` for every class but the predicted one, the minimum kept.

    This is exactly what ART's `clever_u` computes (the same draws in the same order from numpy's global RNG, seeded
    per sample with (seed, index)), class by class so that a degenerate fit is redrawn for that class alone (seeded
    with (seed, index, class, attempt)) up to `cfg.retries` times; a sample with a class still degenerate gets NaN.
    Samples: `cfg.n_samples` of the correctly classified ones, chosen with `seed`. Columns: index (in x), label,
    clever_u, target (the class reaching it), degenerate_fits (met, redrawn or not), failed. numpy's global RNG
    state is restored afterwards.
    """
    art = _art()
    rows = []
    with model.eval_mode():
        pred = model.predict(x).argmax(1).cpu()
        correct = np.flatnonzero((pred == y.cpu()).numpy())
        chosen = np.random.default_rng(seed).choice(correct, size=min(cfg.n_samples, len(correct)), replace=False)
        classifier = art.classifier(model)
        state = np.random.get_state()
        try:
            for i in np.sort(chosen).tolist():
                p = int(pred[i])
                scores, bad, failed = _clever_sample(art, classifier, model, x[i].to(model.device), p, cfg, [seed, i])
                target = min(scores, key=scores.__getitem__)
                score = float("nan") if failed else scores[target]
                rows.append([i, int(y[i]), score, target, bad, failed])
        finally:
            np.random.set_state(state)
    return pd.DataFrame(rows, columns=CLEVER_COLUMNS)


# --- the metrics ---------------------------------------------------------------------------------------------------


def empirical_robustness(model: SharedModel, x: torch.Tensor, cfg: EmpiricalRobustnessConfig) -> float:
    """ART's FGSM empirical robustness on x (it attacks the model's predictions); NaN when no step up to eps
    changes any prediction (ART reports 0.0 then, which would read as no robustness at all)."""
    art = _art()
    with model.eval_mode():
        value = art.fgsm_empirical_robustness(
            art.classifier(model),
            x.detach().cpu().numpy(),
            norm=cfg.norm,
            eps=cfg.eps + EPS_SLACK * cfg.eps_step,
            eps_step=cfg.eps_step,
            batch_size=cfg.batch_size,
        )
    return float("nan") if value == 0.0 else value


def loss_sensitivity(model: SharedModel, x: torch.Tensor, y: torch.Tensor) -> np.ndarray:
    """Per sample, ||grad_x CE(model(x), y)||_2 through ART's `loss_sensitivity`, one sample per call."""
    art = _art()
    with model.eval_mode():
        classifier = art.classifier(model)
        return art.loss_sensitivities(classifier, x.detach().cpu().numpy(), y.cpu().numpy(), model.n_classes)


def compute_model_metrics(
    model: SharedModel, x: torch.Tensor, y: torch.Tensor, cfg: ModelMetricsConfig, prefix: str = "robustness."
) -> ModelMetrics:
    """Every metric `cfg` asks for on (x, y), named `prefix + name`, with CLEVER's per-sample table.

    Names: clever_u_mean/_median/_min over the samples that did not fail, clever_u_n (those samples),
    clever_u_failed, clever_u_degenerate_fits, clever_u_time_s; empirical_robustness; loss_sensitivity (mean over
    x) and loss_sensitivity_max.
    """
    metrics: dict[str, float] = {}
    table = pd.DataFrame(columns=CLEVER_COLUMNS)
    if cfg.clever is not None:
        start = time.perf_counter()
        table = clever_table(model, x, y, cfg.clever, cfg.seed)
        scores = table["clever_u"].dropna().to_numpy(dtype=float)
        nan = float("nan")
        metrics |= {
            "clever_u_mean": float(scores.mean()) if len(scores) else nan,
            "clever_u_median": float(np.median(scores)) if len(scores) else nan,
            "clever_u_min": float(scores.min()) if len(scores) else nan,
            "clever_u_n": float(len(scores)),
            "clever_u_failed": float(table["failed"].sum()),
            "clever_u_degenerate_fits": float(table["degenerate_fits"].sum()),
            "clever_u_time_s": time.perf_counter() - start,
        }
    if cfg.empirical_robustness is not None:
        metrics["empirical_robustness"] = empirical_robustness(model, x, cfg.empirical_robustness)
    if cfg.loss_sensitivity:
        sensitivity = loss_sensitivity(model, x, y)
        metrics |= {"loss_sensitivity": float(sensitivity.mean()), "loss_sensitivity_max": float(sensitivity.max())}
    return ModelMetrics({prefix + k: v for k, v in metrics.items()}, table)


def model_metrics(
    model: SharedModel, x: torch.Tensor, y: torch.Tensor, cfg: ModelMetricsConfig, prefix: str = "robustness."
) -> dict[str, float]:
    """The aggregate metrics of `compute_model_metrics`, ready for `mlflow.log_metrics`."""
    return compute_model_metrics(model, x, y, cfg, prefix).metrics
