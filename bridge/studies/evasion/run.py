"""The evasion study's tasks, each from its recipe and inputs to a `Result`: the victim's probe, an attack cell,
a transfer of a cell's examples onto a defended model, the detector over a cell's examples in every toolkit."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from bridge.attacks.adapter import Unsupported
from bridge.attacks.spec import AttackSpec
from bridge.core.errors import one_line
from bridge.defences.detector import DetectorConfig, detector_study_on
from bridge.engine.executors import Progress
from bridge.engine.result import Result
from bridge.engine.task import Task
from bridge.engine.victim import Victim
from bridge.models.shared import SharedModel
from bridge.report.grid import sample_grid
from bridge.studies.evasion.analysis import Outcome, median_distance
from bridge.studies.evasion.cell import attack, make_targets, measure
from bridge.studies.evasion.checks import model_checks
from bridge.studies.evasion.export import EXAMPLES_FILE, examples_npz
from bridge.studies.evasion.metrics import evaluate_cell
from bridge.studies.evasion.model_metrics import ModelMetricsConfig, compute_model_metrics
from bridge.studies.evasion.plan import base_row
from bridge.studies.extraction.thief import load_thief


def _numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy()


def run_victim(task: Task, victim: Victim, inputs: dict[str, Result], progress: Progress) -> Result:
    """Clean accuracy, the model-level checks (gradients, determinism) and, when asked, ART's model metrics."""
    recipe, model = task.recipe, victim.model
    lo, hi = model.bounds
    defence = recipe.defence if isinstance(recipe.defence, dict) else {}
    clean = float((victim.clean_pred == victim.y).cpu().numpy().mean())  # as evaluate_cell computes it
    row = {"model": recipe.name, "base_model": recipe.base, "defence": recipe.defence_name,
           "gradient": defence.get("gradient", "-"), "dataset": recipe.data["dataset"], "clean_accuracy": clean,
           "n_samples": len(victim.y), "n_classes": model.n_classes, "lower_bound": lo, "upper_bound": hi}  # fmt: skip
    tables = {"checks": [vars(c) for c in model_checks(model, victim.x, victim.y, victim.clean_pred)]}
    metrics = {"clean_accuracy": clean}
    if task.params["robustness"] is not None:
        cfg = ModelMetricsConfig.model_validate(task.params["robustness"])
        try:
            computed = compute_model_metrics(model, victim.x, victim.y, cfg, prefix="")
        except Exception as exc:  # e.g. an ART metric with no TensorFlow path: said in the table, the rest goes on
            row["robustness_error"] = one_line(exc)
        else:
            metrics |= {f"robustness.{k}": v for k, v in computed.metrics.items()}
            tables["clever"] = computed.clever.to_dict("records")
    progress(1)
    return task.result("ok", row=row, metrics=metrics, tables=tables)


def run_attack(task: Task, victim: Victim, inputs: dict[str, Result], progress: Progress) -> Result:
    """One cell: the attack, the bridge's judgement, the sample grid; the examples kept when `task.keep`."""
    spec, translation = AttackSpec.model_validate(task.params["spec"]), task.payload
    try:
        m = measure(spec, translation, victim.model, victim.x, victim.y, victim.clean_logits, progress)
    except Unsupported as exc:  # some refusals depend on the model (its bounds, its framework): known only now
        row = base_row(spec, translation.native, task.recipe, f"unsupported: {exc}")
        return task.result(row["status"], row=row)
    row = {**base_row(spec, translation.native, task.recipe, "ok"), **m.metrics}
    arrays = {}
    if task.keep:
        arrays["x_adv"] = _numpy(m.x_adv)
        if m.targets is not None:
            arrays["targets"] = _numpy(m.targets)
    grid = sample_grid(victim.x, m.x_adv, victim.y, victim.clean_pred, m.adv_pred, victim.model.bounds)
    files = {"samples.png": grid, "translation.json": _json(translation.as_dict())}
    if task.params.get("export") == "npz":
        files[EXAMPLES_FILE] = examples_npz(_numpy(m.x_adv), m.per_sample)
    return task.result("ok", row=row, metrics=_compared(m.metrics), per_sample=m.per_sample, arrays=arrays, files=files,
                       started=m.started, ended=m.ended)  # fmt: skip


def run_transfer(task: Task, victim: Victim, inputs: dict[str, Result], progress: Progress) -> Result:
    """Non-adaptive evaluation: the examples made on the undefended model, judged by this (defended) model. The
    cost columns stay empty: no attack ran on it."""
    (source,) = inputs.values()
    if not source.ok or "x_adv" not in source.arrays:
        return task.result(f"skipped: its source cell {source.state}")
    spec = AttackSpec.model_validate(task.params["spec"])
    model = victim.model
    x_adv = torch.as_tensor(source.arrays["x_adv"]).to(model.device)
    targets = torch.as_tensor(source.arrays["targets"]).to(model.device) if "targets" in source.arrays else None
    adv_pred = model.predict(x_adv, task.recipe.batch_size).argmax(1)
    result = evaluate_cell(
        victim.x, x_adv, victim.y, victim.clean_pred, adv_pred, norm=spec.norm, eps=spec.eps,
        fixed_budget=spec.kind == "fixed", bounds=model.bounds, targets=targets,
    )  # fmt: skip
    metrics = dict(result.metrics)
    if spec.kind == "minimum":
        metrics["median_distance"] = median_distance(Outcome(spec, {}, result.per_sample))
    row = {**base_row(spec, source.row["native_class"], task.recipe, "ok"), "evaluation": "transfer",
           "source": task.params["from"], **metrics}  # fmt: skip
    progress(1)
    return task.result("ok", row=row, metrics=_compared(metrics), per_sample=result.per_sample)


def run_surrogate(task: Task, victim: Victim, inputs: dict[str, Result], progress: Progress) -> Result:
    """The black-box transfer attack: the cell crafted on the model the extraction study stole from this victim,
    judged by the victim. The cost columns are the crafting's, on the thief: the victim answered none of its
    queries (the extraction's are in the extraction table)."""
    (stolen,) = inputs.values()
    if not stolen.ok:
        return task.result(f"skipped: its thief {stolen.state}")
    spec, translation, model = AttackSpec.model_validate(task.params["spec"]), task.payload, victim.model
    net = load_thief(stolen).to(model.device)
    thief = SharedModel(net, model.input_shape, model.n_classes, model.bounds, model.device, "thief")
    row = {**base_row(spec, translation.native, task.recipe, "ok"), "evaluation": "transfer",
           "source": task.params["from"]}  # fmt: skip
    targets = make_targets(spec.targeted, victim.y, victim.clean_logits, spec.seed)  # those of the direct cell
    try:
        x_adv, cost, started = attack(spec, translation, thief, victim.x, victim.y, targets, progress)
    except Unsupported as exc:
        return task.result(f"unsupported: {exc}", row={**row, "status": f"unsupported: {exc}"})
    adv_pred = model.predict(x_adv, task.recipe.batch_size).argmax(1)
    result = evaluate_cell(
        victim.x, x_adv, victim.y, victim.clean_pred, adv_pred, norm=spec.norm, eps=spec.eps,
        fixed_budget=spec.kind == "fixed", bounds=model.bounds, targets=targets,
    )  # fmt: skip
    metrics = {**result.metrics, **{k: cost[k] for k in ("wall_time_s", "samples_per_s", "batch_size")}}
    if spec.kind == "minimum":
        metrics["median_distance"] = median_distance(Outcome(spec, {}, result.per_sample))
    grid = sample_grid(victim.x, x_adv, victim.y, victim.clean_pred, adv_pred, model.bounds)
    files = {"samples.png": grid, "translation.json": _json(translation.as_dict())}
    return task.result("ok", row={**row, **metrics}, metrics=_compared(metrics), per_sample=result.per_sample,
                       files=files, started=started, ended=started + cost["wall_time_s"])  # fmt: skip


# What a reviewer compares across cells in MLflow's runs table; the rest (distance statistics, pass counters,
# throughput) is in the cell's row (result.json, comparison.csv), not a column more in every view.
COMPARED = ("robust_accuracy", "attack_success_rate", "clean_accuracy", "median_distance", "budget_violations",
            "queries_per_sample", "wall_time_s")  # fmt: skip


def _compared(metrics: dict[str, float]) -> dict[str, float]:
    return {k: metrics[k] for k in COMPARED if k in metrics}


def run_detector(task: Task, victim: Victim, inputs: dict[str, Result], progress: Progress) -> Result:
    """A detector trained on one toolkit's examples of the cell, evaluated on every toolkit's."""
    detector = task.params["detector"]
    cfg = DetectorConfig.model_validate({k: detector[k] for k in DetectorConfig.model_fields})
    cells = [r for r in inputs.values() if r.ok and "x_adv" in r.arrays]
    adv = {r.row["toolkit"]: torch.as_tensor(r.arrays["x_adv"]).to(victim.x.device) for r in cells}
    if cfg.train_toolkit not in adv:
        return task.result(f"skipped: no {cfg.train_toolkit} examples of the cell")
    success = {r.row["toolkit"]: torch.as_tensor(r.per_sample["success"].to_numpy(bool).copy()) for r in cells}
    table = detector_study_on(victim.x, adv, cfg, success)
    row = {"model": task.recipe.name, "defence": task.recipe.defence_name}
    metrics = {f"detection_rate.{r.toolkit}": r.detection_rate for r in table.itertuples()}
    metrics["false_positive_rate"] = float(table["false_positive_rate"].iloc[0])
    progress(1)
    return task.result("ok", row=row, metrics=metrics, tables={"detector": table.assign(**row).to_dict("records")})


def _json(value: Any) -> str:
    import json

    return json.dumps(value, indent=1)


RUNNERS = {"victim": run_victim, "attack": run_attack, "transfer": run_transfer, "surrogate": run_surrogate,
           "detector": run_detector}  # fmt: skip
