"""The extraction study's tasks, each from its recipe to a `Result`: an attack stealing the victim at one budget,
and the baseline (the thief architecture trained on as many true labels). Every number is computed here from
predictions the bridge makes, and the queries from the victim's own counters."""

from __future__ import annotations

import importlib
import json
import time
from typing import Any

import pandas as pd
import torch

from bridge.data.dataset import Dataset, select
from bridge.engine.executors import Progress
from bridge.engine.result import Result
from bridge.engine.task import Task
from bridge.engine.victim import Victim
from bridge.models.build import build_model
from bridge.models.config import ModelConfig
from bridge.models.shared import SharedModel
from bridge.models.training import make_optimizer
from bridge.studies.extraction.checks import BASELINE
from bridge.studies.extraction.data import source_set
from bridge.studies.extraction.metrics import agreement, scores
from bridge.studies.extraction.plan import base_row
from bridge.studies.extraction.thief import card, fresh_thief, state_bytes, weights


def _sets(task: Task, victim: Victim) -> tuple[Dataset, Dataset | None]:
    """The query pool and the out-of-distribution set (if any), refused when the victim cannot take their inputs."""
    params = task.params
    pool = source_set(params["queries"], params["seed"])
    ood = None if params["ood"] is None else source_set(params["ood"], params["seed"])
    for name, data in (("queries", pool), ("ood", ood)):
        if data is not None and data.input_shape != victim.model.input_shape:
            raise ValueError(f"extraction.{name}: inputs of shape {data.input_shape}, but {victim.name} takes "
                             f"{victim.model.input_shape}")  # fmt: skip
    return pool, ood


def _first_queries(pool: Dataset, budget: int, seed: int) -> Dataset:
    """The `budget` samples of the pool that copycat and random knockoff query and the baseline labels truly."""
    if budget > len(pool):
        raise ValueError(f"extraction.budgets: {budget} queries, but the query pool has {len(pool)} samples")
    return select(pool, budget, seed)


def _measure(victim: Victim, thief: SharedModel, ood: Dataset | None, batch: int) -> tuple[dict[str, float], Any]:
    """Accuracy and fidelity of `thief` on the evaluation samples, fidelity on `ood`, and the per-sample table."""
    thief_pred = thief.predict(victim.x, batch).argmax(1)
    metrics = scores(victim.y, victim.clean_pred, thief_pred)
    metrics["fidelity_ood"], metrics["n_ood"] = float("nan"), 0.0
    if ood is not None:
        x = ood.x.to(victim.model.device)
        victim_ood = victim.model.predict(x, batch).argmax(1)
        metrics["fidelity_ood"], metrics["n_ood"] = agreement(thief.predict(x, batch).argmax(1), victim_ood), len(ood)
    per_sample = pd.DataFrame({"y": victim.y.cpu().numpy(), "victim_pred": victim.clean_pred.cpu().numpy(),
                               "thief_pred": thief_pred.cpu().numpy()})  # fmt: skip
    per_sample.index.name = "sample"
    return {**metrics, "n_samples": float(len(victim.y))}, per_sample


def _shared(net: torch.nn.Module, victim: Victim) -> SharedModel:
    model = victim.model
    return SharedModel(net, model.input_shape, model.n_classes, model.bounds, model.device, "thief")


def run_extract(task: Task, victim: Victim, inputs: dict[str, Result], progress: Progress) -> Result:
    """One attack at one budget: the thief trained by ART from the victim's answers, the queries counted on the
    victim, the thief judged on the evaluation samples and the out-of-distribution set."""
    params, call = task.params, task.params["call"]
    row = base_row(task.recipe, params["label"], params["budget"], "ok", call["native_class"])
    pool, ood = _sets(task, victim)
    budget, adaptive = params["budget"], params["attack"]["sampling"] == "adaptive"
    # random sampling and copycat query exactly the samples the baseline is trained on: the pool is cut to the budget
    queries = pool if adaptive else _first_queries(pool, budget, params["seed"])
    cfg = ModelConfig.model_validate(params["thief"])
    model = victim.model
    thief = _shared(fresh_thief(cfg, model.input_shape, model.n_classes), victim)
    art = importlib.import_module("adapters.art_extraction")
    started, start = time.time(), time.perf_counter()
    with model.eval_mode(), model.counting() as counters:
        art.extract(model, thief, make_optimizer(thief.parameters(), cfg.training), call, queries.x.numpy(),
                    queries.y.numpy(), params["seed"])  # fmt: skip
    wall = time.perf_counter() - start
    metrics, per_sample = _measure(victim, thief, ood, task.recipe.batch_size)
    metrics |= {"queries": float(counters.forward_samples), "queries_per_budget": counters.forward_samples / budget,
                "query_calls": float(counters.forward_calls), "wall_time_s": wall}  # fmt: skip
    row |= {**metrics, "input_shape": list(model.input_shape), "n_classes": model.n_classes}
    about = card(cfg, model.input_shape, model.n_classes)
    files = {"thief.pt": state_bytes(thief.net), "thief.json": json.dumps(about, indent=1),
             "translation.json": json.dumps(call, indent=1)}  # fmt: skip
    progress(1)
    return task.result("ok", row=row, metrics=metrics, per_sample=per_sample, arrays=weights(thief.net), files=files,
                       started=started, ended=time.time())  # fmt: skip


def run_baseline(task: Task, victim: Victim, inputs: dict[str, Result], progress: Progress) -> Result:
    """The thief architecture trained on `budget` query samples with their true labels (the samples copycat and
    random knockoff query), through the model cache; no query reaches the victim."""
    params = task.params
    pool, ood = _sets(task, victim)
    labelled = _first_queries(pool, params["budget"], params["seed"])
    cfg = ModelConfig.model_validate(params["thief"])
    start = time.perf_counter()
    net, _ = build_model(cfg, labelled, log=lambda _: None, device=victim.model.device)
    wall = time.perf_counter() - start
    metrics, per_sample = _measure(victim, _shared(net, victim), ood, task.recipe.batch_size)
    metrics |= {"queries": 0.0, "wall_time_s": wall}
    progress(1)
    row = base_row(task.recipe, BASELINE, params["budget"], "ok") | metrics
    return task.result("ok", row=row, metrics=metrics, per_sample=per_sample)


RUNNERS = {"extract": run_extract, "baseline": run_baseline}
