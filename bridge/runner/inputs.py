"""What a study's parent run records about its inputs: the scenario as written and resolved, the data's identity,
each model's record, its weights and training curves, and the plan (every task's key, kind and label)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import yaml

from bridge.core.identity import canonical_json
from bridge.engine.recipe import Recipe
from bridge.engine.result import Aggregate
from bridge.engine.store import Store
from bridge.engine.task import Task
from bridge.engine.victim import Victim
from bridge.models.errors import ModelError

PLAN = "study/plan.json"


def plan_record(plan: Any, tasks: list[Task], metas: dict[str, Any]) -> Aggregate:
    """The scenario (as written and resolved, with every cell's translation) and the study's plan."""
    scn = plan.scenario
    resolved = {
        "scenario": scn.model_dump(mode="json"),
        "cells": [
            {**c.spec.params(), **({"unsupported": c.unsupported} if c.unsupported else c.translation.as_dict())}
            for c in plan.cells
        ],
    }
    files: dict[str, str | bytes] = {
        "scenario/resolved.yaml": yaml.safe_dump(resolved, sort_keys=False),
        PLAN: canonical_json({"tasks": [t.describe() for t in tasks], "meta": metas}),
    }
    if plan.source:
        files[f"scenario/{Path(plan.path).name}"] = plan.source
    return Aggregate(files)


def params(plan: Any, recipes: list[Recipe], n_samples: int, n_tasks: int) -> dict[str, Any]:
    """The parent's params: the settings that decide every number, and each victim's identity."""
    scn = plan.scenario
    first = recipes[0]
    out: dict[str, Any] = {
        "seed": scn.seed, "device": scn.device, "precision": scn.precision, "batch_size": scn.batch_size,
        "n_samples": n_samples, "data.dataset": scn.data.dataset, "data.split": scn.data.split,
        "data.fingerprint": first.data_fingerprint, "data.train_fingerprint": first.train_fingerprint,
        "cells": len(plan.cells) * len(recipes), "tasks": n_tasks,
    }  # fmt: skip
    for r in recipes:
        out[f"model.{r.name}.hash"] = r.model_identity
        if isinstance(r.defence, dict):
            for key, value in r.defence.items():  # kind, gradient, bpda, parameters ...
                if value is not None and key != "name":
                    out[f"defence.{r.name}.{key}"] = value if not isinstance(value, dict) else str(value)
    return out


def victim_record(v: Victim) -> Aggregate:
    """A victim's record on the parent: config, weights file and sha256; for a model trained in this study also
    the weights (refused if the file no longer has the recorded sha256), the training time and the loss and
    accuracy curves (per epoch); for a model trained with DP-SGD (here or before) its epsilon at the record's delta
    (`model.<name>.dp_epsilon`)."""
    name, record = v.name, v.record
    out = Aggregate(
        {f"model/{name}/record.json": canonical_json({k: x for k, x in record.items() if not k.endswith("_curve")})}
    )
    if record.get("trained"):
        path = Path(record["checkpoint"])
        weights = path.read_bytes()
        if hashlib.sha256(weights).hexdigest() != record["sha256"]:
            raise ModelError(f"{path} changed after {name} was trained: it no longer holds the weights evaluated")
        out.files[f"model/{name}/{path.name}"] = weights
        out.metrics[f"train_time_s.{name}"] = record["train_time_s"]
    if "dp" in record:
        out.metrics[f"model.{name}.dp_epsilon"] = record["dp"]["epsilon"]
    return out


def victim_params(v: Victim) -> dict[str, Any]:
    return {f"model.{v.name}.sha256": v.record["sha256"]}


def log_curves(store: Store, run_id: str, v: Victim) -> None:
    """The training curves of a model trained in this study, one step per epoch (the held-out accuracy too, with
    early stopping)."""
    from mlflow.entities import Metric

    record = v.record
    if not record.get("trained"):
        return
    metrics = [
        Metric(f"{key.removesuffix('_curve')}.{v.name}", float(value), 0, epoch)
        for key in ("loss_curve", "train_accuracy_curve", "validation_accuracy_curve")
        for epoch, value in enumerate(record.get(key, []))
    ]
    for i in range(0, len(metrics), 1000):
        store.client.log_batch(run_id, metrics=metrics[i : i + 1000])
