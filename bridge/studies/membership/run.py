"""The membership study's tasks, each from its recipe and inputs to a `Result`.

`model`: the target (trained on exactly the members) or the control (trained on samples outside the pool), its
logits on the pool kept for LiRA. `shadow`: one of LiRA's shadow models, its logits on the pool. `attack`: one
attack on the target or the control, scored on the evaluated halves; the bridge's metrics from its scores (SHAPr
and PDTP, ART's per-member leakage, score members only and have leakage columns in place of the ROC's).
Every model is trained through `build_model`, so a repeated or resumed study loads it from the model cache.
"""

from __future__ import annotations

import importlib
import time
from typing import Any

import numpy as np
import pandas as pd
import torch
from pydantic import TypeAdapter
from torch import nn

from bridge.data.config import DataConfig
from bridge.data.dataset import Dataset
from bridge.defences.grid import NONE, parse_entry
from bridge.engine.executors import Progress
from bridge.engine.recipe import Recipe
from bridge.engine.result import Result
from bridge.engine.task import Task
from bridge.engine.victim import load_data
from bridge.models.build import build_model
from bridge.models.config import ModelConfig
from bridge.models.shared import resolve_device
from bridge.models.training import make_optimizer
from bridge.models.zoo import build
from bridge.studies.membership import split as splits
from bridge.studies.membership.config import AttackEntry, Members, target_model
from bridge.studies.membership.lira import lira_scores, phi
from bridge.studies.membership.roc import LEVELS, membership_metrics

BATCH = 512  # of the bridge's own forward passes


def section(task: Task) -> Members:
    return Members.model_validate(task.params["membership"])


def _entry(task: Task) -> Any:
    return TypeAdapter(AttackEntry).validate_python(task.params["attack"])


def model_config(recipe: Recipe, overrides: dict[str, Any], seed_offset: int = 0) -> ModelConfig:
    """The recipe's model behind its training defence, with `target_training`, its training seed moved by
    `seed_offset` (the control and each shadow start from their own initialisation)."""
    defence = NONE if recipe.defence == NONE else parse_entry(recipe.defence)
    cfg = target_model(ModelConfig.model_validate(recipe.model), defence, overrides)
    training = cfg.training.model_copy(update={"seed": cfg.training.seed + seed_offset})
    return cfg.model_copy(update={"training": training})


def study_data(task: Task) -> tuple[Dataset, splits.Split]:
    """The train split and who is a member of it, as the task's recipe and section say."""
    recipe, cfg = task.recipe, section(task)
    _, train = load_data(DataConfig.model_validate(recipe.data), recipe.seed, lambda _: None)
    return train, splits.draw(len(train), cfg.members, recipe.seed if cfg.seed is None else cfg.seed)


def train_on(recipe: Recipe, cfg: ModelConfig, data: Dataset) -> tuple[nn.Module, dict[str, Any]]:
    """`cfg` trained on `data` (or loaded from the model cache), in eval mode on the recipe's device; its record."""
    return build_model(cfg, data, log=lambda _: None, device=resolve_device(recipe.device))


def _role_model(task: Task, train: Dataset, split: splits.Split) -> tuple[tuple[nn.Module, dict], np.ndarray]:
    """The target (on the members) or the control (on samples outside the pool) with its record, and its training
    indices."""
    cfg = section(task)
    if task.params["role"] == "target":
        indices = split.members
        model = model_config(task.recipe, cfg.target_training)
    else:
        indices = splits.control_indices(split)
        model = model_config(task.recipe, cfg.target_training, seed_offset=1)
    return train_on(task.recipe, model, splits.subset(train, indices, task.params["role"])), indices


@torch.no_grad()
def logits_of(net: nn.Module, x: torch.Tensor) -> np.ndarray:
    device = next(net.parameters()).device
    return torch.cat([net(b.to(device)).float().cpu() for b in x.split(BATCH)]).numpy()


def _accuracy(logits: np.ndarray, y: np.ndarray) -> float:
    return float((logits.argmax(1) == y).mean())


def identity(task: Task) -> dict[str, Any]:
    """The columns that name a task's row."""
    recipe = task.recipe
    return {"model": recipe.name, "defence": recipe.defence_name, "dataset": recipe.data["dataset"]}


def run_model(task: Task, inputs: dict[str, Result], progress: Progress) -> Result:
    """Train the target or the control; its accuracy on its training set, the members and the non-members."""
    train, split = study_data(task)
    (net, record), indices = _role_model(task, train, split)
    pool = split.pool
    logits = logits_of(net, train.x[torch.from_numpy(pool)])
    y = train.y.numpy()
    own = logits_of(net, train.x[torch.from_numpy(indices)])
    m = len(split.members)
    metrics = {"train_accuracy": _accuracy(own, y[indices]), "member_accuracy": _accuracy(logits[:m], y[pool[:m]]),
               "nonmember_accuracy": _accuracy(logits[m:], y[pool[m:]])}  # fmt: skip
    epsilon = record["dp"]["epsilon"] if "dp" in record else float("nan")  # DP-SGD's, at the record's delta
    row = {**identity(task), "role": task.params["role"], "n_train": len(indices), **metrics, "dp_epsilon": epsilon}
    progress(1)
    return task.result("ok", row=row, metrics=metrics, arrays={"logits": logits.astype(np.float32)})


def run_shadow(task: Task, inputs: dict[str, Result], progress: Progress) -> Result:
    """LiRA's shadow model `index` of its set: trained on its draw, its logits on the pool and which it saw."""
    cfg, p = section(task), task.params
    train, split = study_data(task)
    seed = task.recipe.seed if cfg.seed is None else cfg.seed
    indices = splits.shadow_sets(split, p["variant"], p["count"], seed)[p["index"]]
    model = model_config(task.recipe, cfg.target_training, seed_offset=2 + p["index"])
    net, _ = train_on(task.recipe, model, splits.subset(train, indices, f"shadow{p['index']}"))
    pool = split.pool
    arrays = {"logits": logits_of(net, train.x[torch.from_numpy(pool)]).astype(np.float32),
              "inside": np.isin(pool, indices)}  # fmt: skip
    progress(1)
    return task.result("ok", row={**identity(task), "n_train": len(indices)}, arrays=arrays)


def _lira(task: Task, inputs: dict[str, Result], train: Dataset, split: splits.Split) -> np.ndarray:
    """LiRA's scores of the evaluated examples from the logits of the model and of the shadows (the inputs)."""
    found = list(inputs.values())
    failed = [r.label for r in found if not r.ok]
    if failed:
        raise RuntimeError(f"LiRA needs every shadow model: {', '.join(failed)} did not run")
    (model,) = [r for r in found if r.kind == "model"]
    shadows = sorted((r for r in found if r.kind == "shadow"), key=lambda r: r.params["index"])
    positions = split.evaluated
    y = train.y.numpy()[split.pool[positions]]
    target = phi(model.arrays["logits"][positions], y)
    shadow_phi = np.stack([phi(s.arrays["logits"][positions], y) for s in shadows])
    inside = np.stack([s.arrays["inside"][positions] for s in shadows])
    return lira_scores(target, shadow_phi, inside, _entry(task).variant)


def _art_scores(task: Task, train: Dataset, split: splits.Split) -> np.ndarray:
    """The scores of one of ART's attacks on the model (target or control) of the task's role."""
    art = importlib.import_module("adapters.art_membership")
    cfg, entry = section(task), _entry(task)
    (net, _), _ = _role_model(task, train, split)
    device = resolve_device(task.recipe.device)
    shape, k, bounds = train.input_shape, train.n_classes, train.bounds
    classifier = art.estimator(net, shape, k, bounds, device)
    x, y = train.x.numpy(), train.y.numpy()
    pool = split.pool
    evaluated = pool[split.evaluated]
    seed = splits.art_rng_seed(task.recipe.seed if cfg.seed is None else cfg.seed)
    if entry.attack == "gap":
        return art.gap_scores(classifier, x[evaluated], y[evaluated])
    if entry.attack == "blackbox":
        fit = pool[split.fit]
        labelled = (x[fit], y[fit], split.is_member(split.fit))
        return art.black_box_scores(classifier, labelled, x[evaluated], y[evaluated], entry, seed)
    attacker = split.attacker
    drawn = np.random.default_rng(seed).choice(attacker, size=min(len(pool), len(attacker)), replace=False)
    model = model_config(task.recipe, cfg.target_training)
    template_net = build(model.arch, shape, k, model.dropout, model.options).to(device)
    optimizer = make_optimizer(template_net.parameters(), model.training)
    template = art.estimator(template_net, shape, k, bounds, device, optimizer)
    data = (x[drawn], y[drawn])
    return art.shadow_scores(classifier, template, data, x[evaluated], y[evaluated], entry, model.training, seed)


def _shapr(task: Task, train: Dataset, split: splits.Split) -> np.ndarray:
    """ART's SHAPr leakage of every member on the model of the task's role, against the non-members as the held-out
    set. On the target the members are its whole training set; on the control (which never saw them) the same
    samples give the score of samples a model did not train on, the baseline."""
    art = importlib.import_module("adapters.art_membership")
    (net, _), _ = _role_model(task, train, split)
    x, y = train.x.numpy(), train.y.numpy()
    members, held_out = split.members, split.nonmembers
    return art.shapr_scores(net, train.input_shape, train.n_classes, train.bounds, resolve_device(task.recipe.device),
                            (x[members], y[members]), (x[held_out], y[held_out]), _entry(task).knn_metric)  # fmt: skip


def pdtp_cases(x: np.ndarray, y: np.ndarray, indices: np.ndarray, scored: np.ndarray,
               role: str) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:  # fmt: skip
    """ART's PDTP inputs (x, y, indexes) for the `scored` samples (indices into x; ART's values come in their order)
    on a model trained on x[indices]. The target trained on them: one case, its training set and their positions in
    it. The control did not: one case per sample, appended to its training set, which ART removes again and so
    retrains on exactly the control's data."""
    if role == "target":
        position = {int(i): p for p, i in enumerate(indices)}
        return [(x[indices], y[indices], np.array([position[int(i)] for i in scored]))]
    return [(x[np.append(indices, i)], y[np.append(indices, i)], np.array([len(indices)])) for i in scored]


def _pdtp(task: Task, train: Dataset, split: splits.Split) -> tuple[np.ndarray, np.ndarray]:
    """ART's PDTP of `samples` members (drawn with the study's seed) on the model of the task's role: their
    train-split indices and (n, 3) values (average, worst, std over ART's retrainings). On the target ART retrains
    on the members without each one; on the control, on exactly the control's training set (`pdtp_cases`): the
    member never counted, so the control's value is what retraining alone moves (the baseline)."""
    art = importlib.import_module("adapters.art_membership")
    cfg, entry = section(task), _entry(task)
    (net, _), indices = _role_model(task, train, split)
    seed = task.recipe.seed if cfg.seed is None else cfg.seed
    scored = split.members[splits.pdtp_members(split, entry.samples, seed)]
    cases = pdtp_cases(train.x.numpy(), train.y.numpy(), indices, scored, task.params["role"])
    model = model_config(task.recipe, cfg.target_training)
    shape, k, device = train.input_shape, train.n_classes, resolve_device(task.recipe.device)
    template = build(model.arch, shape, k, model.dropout, model.options).to(device)
    values = art.pdtp_scores(net, template, shape, k, train.bounds, device, cases, entry, model.training,
                             splits.art_rng_seed(seed))  # fmt: skip
    return scored, values


def leakage_metrics(scores: np.ndarray, n_held_out: float, unchanged: float) -> dict[str, float]:
    """A per-member leakage row (SHAPr's, PDTP's): mean and max leakage over the members scored, the share above
    `unchanged` (the value of no leak: 0 for SHAPr, ART says; PDTP's no-change value); no ROC (AUC, TPR, FPR floor
    NaN): these score members only. `n_held_out`: the non-members SHAPr is computed against (NaN for PDTP)."""
    scores = np.asarray(scores, np.float64)
    nan = float("nan")
    return {"auc": nan, "balanced_accuracy": nan, **dict.fromkeys(LEVELS, nan), "fpr_floor": nan,
            "n_members": float(len(scores)), "n_nonmembers": float(n_held_out),
            "leakage_mean": float(scores.mean()), "leakage_max": float(scores.max()),
            "leaking_share": float((scores > unchanged).mean())}  # fmt: skip


def _leakage(task: Task, train: Dataset, split: splits.Split) -> tuple[dict[str, float], pd.DataFrame]:
    """A leakage row's metrics and per-member scores (`score`; PDTP adds ART's `worst` and `std`)."""
    entry = _entry(task)
    if entry.attack == "shapr":
        index, scores = split.members, {"score": _shapr(task, train, split)}
        metrics = leakage_metrics(scores["score"], len(split.nonmembers), 0.0)
    else:
        index, values = _pdtp(task, train, split)
        scores = {"score": values[:, 0], "worst": values[:, 1], "std": values[:, 2]}
        metrics = leakage_metrics(scores["score"], float("nan"), entry.unchanged)
    return metrics, pd.DataFrame({"index": index, "member": np.ones(len(index), bool), **scores})


def attack_label(entry: Any) -> str:
    """An attack's name in tables, plots and metric names."""
    if entry.attack == "blackbox":
        return f"blackbox-{entry.input_type}-{entry.model_type}"
    if entry.attack == "shadow":
        return f"shadow-{entry.model_type}-{entry.shadow_models}"
    if entry.attack == "lira":
        return f"lira-{entry.variant}-{entry.shadow_models}"
    if entry.attack == "pdtp":
        return f"pdtp-{entry.comparison_type}"
    return entry.attack


def attack_row(task: Task, status: str) -> dict[str, Any]:
    """An attack task's identity columns."""
    entry = _entry(task)
    return {**identity(task), "attack": task.params["label"], "toolkit": "bridge" if entry.attack == "lira" else "art",
            "evaluated_on": task.params["role"], "shadow_models": getattr(entry, "shadow_models", None),
            "status": status}  # fmt: skip


def run_attack(task: Task, inputs: dict[str, Result], progress: Progress) -> Result:
    """One attack on the target or the control; AUC, balanced accuracy and TPR at low FPR from its scores (SHAPr's
    and PDTP's leakage columns instead)."""
    started = time.time()
    train, split = study_data(task)
    if _entry(task).attack in ("shapr", "pdtp"):
        metrics, per_sample = _leakage(task, train, split)
        ended = time.time()
        row = {**attack_row(task, "ok"), **metrics, "wall_time_s": ended - started}
        progress(1)
        logged = {k: v for k, v in metrics.items() if not np.isnan(v)}
        return task.result("ok", row=row, metrics=logged, per_sample=per_sample, started=started, ended=ended)
    if _entry(task).attack == "lira":
        scores = _lira(task, inputs, train, split)
    else:
        scores = _art_scores(task, train, split)
    members = split.is_member(split.evaluated)
    metrics = membership_metrics(scores, members)
    ended = time.time()
    per_sample = pd.DataFrame({"index": split.pool[split.evaluated], "member": members, "score": scores})
    row = {**attack_row(task, "ok"), **metrics, "wall_time_s": ended - started}
    progress(1)
    return task.result("ok", row=row, metrics=metrics, per_sample=per_sample, started=started, ended=ended)


RUNNERS = {"model": run_model, "shadow": run_shadow, "attack": run_attack}
