"""Runs a planned scenario: one shared model on one device, every cell through its adapter, every number
computed by the bridge, every run and artifact recorded in MLflow."""

from __future__ import annotations

import random
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from bridge.attacks.catalogue import NATIVE
from bridge.data.dataset import Dataset
from bridge.defences.grid import NONE, DefenceEntry, TrainingDefence, entry_name, victim_name
from bridge.models.config import ModelConfig
from bridge.models.keras import KerasModel
from bridge.models.shared import SharedModel, resolve_device
from bridge.scenario import Cell, Plan, ScenarioError, load, load_raw
from bridge.studies.evasion.analysis import (
    GROUP,
    Outcome,
    median_distance,
    security_curves,
    worst_case_by_eps,
    worst_case_per_group,
)
from bridge.studies.evasion.checks import run_checks

TABLE_COLUMNS = [
    "model", "defence", "dataset", "attack", "norm", "eps", "targeted", "evaluation", "toolkit", "native_class",
    "status",
    "clean_accuracy", "robust_accuracy", "robust_accuracy_worst_case", "attack_success_rate", "median_distance",
    "linf_mean", "linf_max", "l2_mean", "l2_max", "l0_mean", "budget_violations", "wall_time_s", "samples_per_s",
    "forward_calls", "backward_calls", "forward_samples", "backward_samples", "queries_per_sample",
    "queries_blocked", "run_id",
]  # fmt: skip


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def make_targets(mode: str, y: torch.Tensor, clean_logits: torch.Tensor, seed: int) -> torch.Tensor | None:
    """Target labels, the same for every toolkit: uniform over the other classes, or the least likely one."""
    if mode == "none":
        return None
    if mode == "least_likely":
        return clean_logits.argmin(1).to(y.device)
    n_classes = clean_logits.shape[1]
    gen = torch.Generator().manual_seed(seed)
    shift = torch.randint(1, n_classes, (len(y),), generator=gen).to(y.device)
    return (y + shift) % n_classes


@dataclass
class Victim:
    """The shared model with the evaluation data on its device and its clean outputs, computed once."""

    model: SharedModel | KerasModel
    x: torch.Tensor
    y: torch.Tensor
    clean_logits: torch.Tensor
    record: dict[str, Any]
    dataset: str
    defence: str = NONE
    base: str = ""  # the model's name without its defence
    preprocessing: bool = False  # the defence is a layer in front of the model (so transfer applies)

    @property
    def clean_pred(self) -> torch.Tensor:
        return self.clean_logits.argmax(1)


def load_data(plan: Plan, log: Callable[[str], None]) -> tuple[Dataset, Dataset]:
    """The evaluation samples (deterministic selection) and the training split, loaded once per run."""
    from bridge.data.dataset import load_split, select

    cfg, scn = plan.scenario.data, plan.scenario
    evaluation = select(load_split(cfg, log=log), cfg.n_samples, scn.seed, balanced=cfg.balanced)
    return evaluation, load_split(cfg, "train", log=log)


def prepare_victim(
    plan: Plan,
    cfg: ModelConfig,
    data: Dataset,
    train: Dataset,
    log: Callable[[str], None],
    progress: bool = False,
    entry: DefenceEntry = NONE,
) -> Victim:
    """One shared model (`cfg` behind the defence `entry`) on the scenario's device, with the evaluation data there
    and its clean outputs."""
    from bridge.defences.preprocessing import Defence, defend
    from bridge.models.build import build_model

    scn = plan.scenario
    device = resolve_device(scn.device)
    base, name = cfg.name, victim_name(cfg.name, entry)
    if isinstance(entry, TrainingDefence):
        cfg = entry.apply(cfg)
    if cfg.framework == "keras":
        net, record = build_model(cfg, train, progress=progress, log=log)
        norm = None if cfg.normalize is None else (cfg.normalize.mean, cfg.normalize.std)
        model = KerasModel(net, data.input_shape, data.n_classes, data.bounds, scn.device, name, norm)
    else:
        defence = entry if isinstance(entry, Defence) else None
        trained_behind = defence is not None and defence.out_shape(data.input_shape) != data.input_shape
        net, record = build_model(cfg, train, progress, log, device, defence if trained_behind else None)
        if defence is not None and not trained_behind:
            net = defend(net, defence, data.bounds).to(device)
        model = SharedModel(net, data.input_shape, data.n_classes, data.bounds, device, name, scn.precision)
    if entry != NONE:
        record = {**record, "defence": entry.model_dump(mode="json")}
    x, y = data.x.to(model.device), data.y.to(model.device)
    clean = model.predict(x, scn.batch_size)
    return Victim(model, x, y, clean, record, data.name, entry_name(entry), base, isinstance(entry, Defence))


def attack_cell(cell: Cell, victim: Victim) -> tuple[torch.Tensor, torch.Tensor | None, dict[str, float]]:
    """Run one cell in batches; returns x_adv, the targets and the cost metrics measured by the bridge."""
    from bridge.attacks.adapter import get_adapter

    spec, model = cell.spec, victim.model
    seed_everything(spec.seed)
    targets = make_targets(spec.targeted, victim.y, victim.clean_logits, spec.seed)
    adapter = get_adapter(spec.toolkit)
    b = spec.batch_size
    with model.eval_mode(), model.counting() as counters:
        start = time.perf_counter()
        attack = adapter.build(cell.translation, spec, model)
        chunks = []
        for i in range(0, len(victim.y), b):
            x, y = victim.x[i : i + b], victim.y[i : i + b]
            with model.query_budget(x, y, spec.max_queries):
                chunks.append(attack(x, y, None if targets is None else targets[i : i + b]))
        if model.device.type == "cuda":
            torch.cuda.synchronize(model.device)
        wall = time.perf_counter() - start
    x_adv = torch.cat(chunks)
    if x_adv.shape != victim.x.shape or x_adv.dtype != torch.float32 or x_adv.device != model.device:
        raise TypeError(f"adapter returned {tuple(x_adv.shape)} {x_adv.dtype} on {x_adv.device}")
    n = len(victim.y)
    cost = {
        "wall_time_s": wall,
        "samples_per_s": n / wall if wall > 0 else float("inf"),
        "queries_per_sample": counters.forward_samples / n,
    }
    return x_adv, targets, {**cost, **counters.as_metrics()}


def base_row(cell: Cell, victim: Victim, status: str) -> dict[str, Any]:
    spec = cell.spec
    return {
        "model": victim.model.name,
        "defence": victim.defence,
        "dataset": victim.dataset,
        "attack": f"native:{spec.native}" if spec.attack == NATIVE else spec.attack,
        "norm": spec.norm,
        "eps": spec.eps,
        "targeted": spec.targeted,
        "evaluation": "direct",
        "toolkit": spec.toolkit,
        "native_class": cell.translation.native if cell.translation else None,
        "status": status,
    }


@dataclass
class Measured:
    outcome: Outcome
    metrics: dict[str, float]
    x_adv: torch.Tensor
    adv_pred: torch.Tensor


def evaluate(cell: Cell, victim: Victim, keep: bool = False) -> Measured:
    """Attack, then judge every sample with the model's own outputs (no MLflow: the runner records it)."""
    from bridge.studies.evasion.metrics import evaluate_cell

    spec, model = cell.spec, victim.model
    x_adv, targets, cost = attack_cell(cell, victim)
    adv_pred = model.predict(x_adv, spec.batch_size).argmax(1)
    result = evaluate_cell(
        victim.x, x_adv, victim.y, victim.clean_pred, adv_pred,
        norm=spec.norm, eps=spec.eps, fixed_budget=spec.kind == "fixed", bounds=model.bounds, targets=targets,
    )  # fmt: skip
    metrics = {**result.metrics, **cost}
    row = base_row(cell, victim, "ok")
    outcome = Outcome(spec, row, result.per_sample, x_adv if keep or keep_x_adv(spec) else None)
    if spec.kind == "minimum":
        metrics["median_distance"] = median_distance(outcome)
    row.update(metrics)
    return Measured(outcome, metrics, x_adv, adv_pred)


class Runner:
    """One execution of a plan: a parent run, a child run per supported cell, the comparison on the parent."""

    def __init__(self, plan: Plan, progress: bool = True, log: Callable[[str], None] = print):
        self.plan = plan
        self.progress = progress
        self.log = log
        self.experiment_id: str | None = None
        self.multi_model = False

    def run(self) -> pd.DataFrame:
        import mlflow

        from bridge import tracking

        scn = self.plan.scenario
        if self.plan.data_missing:  # before anything is written
            raise ScenarioError(f"{self.plan.path}: data: {self.plan.data_missing}")
        uri = tracking.resolve_uri(scn.tracking.uri)
        experiment_id = self.experiment_id = tracking.setup(uri, scn.tracking.experiment or scn.name)
        data, train = load_data(self.plan, self.log)
        victims = [
            prepare_victim(self.plan, cfg, data, train, self.log, self.progress, entry)
            for cfg in scn.model_list
            for entry in scn.defences
        ]
        self.multi_model = len(victims) > 1
        tags = {"dataset": data.name, "scenario": scn.name, "models": ", ".join(v.model.name for v in victims)}
        parent = mlflow.start_run(experiment_id=experiment_id, run_name=scn.name, tags=tags)
        try:
            self._log_parent_inputs(data, train, victims)
            cells = [(cell, victim) for victim in victims for cell in self.plan.cells]
            outcomes = [self._run_cell(cell, victim) for cell, victim in self._iterate(cells)]
            transferred = transfer_outcomes(outcomes, victims) if scn.transfer else []
            consensus, agreement = worst_case_per_group(outcomes)
            table = pd.DataFrame([o.row for o in outcomes + transferred], columns=TABLE_COLUMNS)
            self._log_comparison(table)
            self._log_consensus(consensus, agreement, worst_case_by_eps(outcomes), security_curves(outcomes))
            checks = pd.concat(
                [
                    run_checks([o for o in outcomes if o.row["model"] == v.model.name], v.model, v.x, v.y,
                               v.clean_pred, [t for t in transferred if t.row["model"] == v.model.name]
                               ).assign(model=v.model.name)
                    for v in victims
                ],
                ignore_index=True,
            )  # fmt: skip
            self._log_checks(checks)
            if len(scn.defences) > 1:
                self._log_tradeoff(tradeoff_table(outcomes + transferred, victims))
            if scn.robustness is not None:
                self._log_robustness(victims)
            if scn.detector is not None:
                self._log_detector(outcomes, victims)
            ran = table[~table["status"].str.startswith("unsupported")]
            failed = bool(len(ran)) and bool(ran["status"].str.startswith("failed").all())
        except KeyboardInterrupt:
            mlflow.end_run("KILLED")
            raise
        except BaseException:
            mlflow.end_run("FAILED")
            raise
        mlflow.end_run("FAILED" if failed else "FINISHED")
        table.attrs.update(
            tracking_uri=uri,
            experiment_id=experiment_id,
            parent_run_id=parent.info.run_id,
            failed=failed,
            n_samples=len(data),
            checks=checks.to_dict("records"),  # records, not a DataFrame: pandas compares attrs in concat
        )
        return table

    def _iterate(self, cells: list[tuple[Cell, Victim]]) -> Iterable[tuple[Cell, Victim]]:
        if not self.progress:
            yield from cells
            return
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        with Progress(*columns, console=Console(stderr=True), transient=False) as bar:
            task = bar.add_task("cells", total=len(cells))
            for cell, victim in cells:
                bar.update(task, description=f"{self._run_name(cell, victim):<42}")
                yield cell, victim
                bar.advance(task)

    def _run_name(self, cell: Cell, victim: Victim) -> str:
        """`pgd-linf eps=0.1 | foolbox`, with `| model` appended when the scenario compares models."""
        return cell.spec.label + (f" | {victim.model.name}" if self.multi_model else "")

    def _tags(self, victim: Victim) -> dict[str, str]:
        return {"model": victim.model.name, "dataset": victim.dataset, "scenario": self.plan.scenario.name}

    def _log_parent_inputs(self, data: Dataset, train: Dataset, victims: list[Victim]) -> None:
        """The scenario as written and resolved, the data's identity, and each model's record and training."""
        import mlflow

        scn = self.plan.scenario
        if self.plan.source:
            mlflow.log_text(self.plan.source, f"scenario/{Path(self.plan.path).name}")
        resolved = {
            "scenario": scn.model_dump(mode="json"),
            "cells": [
                {**c.spec.params(), **({"unsupported": c.unsupported} if c.unsupported else c.translation.as_dict())}
                for c in self.plan.cells
            ],
        }
        mlflow.log_dict(resolved, "scenario/resolved.yaml")
        params: dict[str, Any] = {
            "seed": scn.seed,
            "device": str(victims[0].model.device),
            "precision": scn.precision,
            "batch_size": scn.batch_size,
            "n_samples": len(data),
            "data.dataset": data.name,
            "data.split": scn.data.split,
            "data.fingerprint": data.fingerprint,
            "data.train_fingerprint": train.fingerprint,
            "cells": len(self.plan.cells) * len(victims),
        }
        metrics: dict[str, float] = {}
        for v in victims:
            name, record = v.model.name, v.record
            params[f"model.{name}.hash"] = record["hash"]
            params[f"model.{name}.sha256"] = record["sha256"]
            for key, value in record.get("defence", {}).items():  # kind, gradient, bpda, parameters ...
                if value is not None and key != "name":
                    params[f"defence.{name}.{key}"] = value if not isinstance(value, dict) else str(value)
            mlflow.log_dict({k: v for k, v in record.items() if not k.endswith("_curve")}, f"model/{name}/record.json")
            metrics[f"clean_accuracy.{name}" if self.multi_model else "clean_accuracy"] = float(
                (v.clean_pred == v.y).float().mean()
            )
            if record.get("trained"):  # trained in this run: the weights, the time and the curves
                mlflow.log_artifact(record["checkpoint"], f"model/{name}")
                metrics[f"train_time_s.{name}"] = record["train_time_s"]
                for key in ("loss_curve", "train_accuracy_curve"):
                    for epoch, value in enumerate(record.get(key, [])):
                        mlflow.log_metric(f"{key.removesuffix('_curve')}.{name}", value, step=epoch)
        mlflow.log_params(params)
        mlflow.log_metrics(metrics)

    def _keep(self, cell: Cell, victim: Victim) -> bool:
        """Whether the cell's examples are needed after it: for transfer (the undefended models' cells) or for
        the detector (its attack's cells)."""
        scn, spec = self.plan.scenario, cell.spec
        detector = scn.detector
        if scn.transfer and victim.defence == NONE:
            return True
        return detector is not None and (spec.attack, spec.norm, spec.eps) == (detector.attack, detector.norm,
                                                                               detector.eps)  # fmt: skip

    def _log_tradeoff(self, tradeoff: pd.DataFrame) -> None:
        """Clean vs worst-case robust accuracy, one point per (model, defence): table and plot on the parent."""
        import mlflow

        from bridge.report import plots

        mlflow.log_text(tradeoff.to_csv(index=False), "tradeoff.csv")
        if len(tradeoff):
            mlflow.log_figure(plots.tradeoff(tradeoff), "plots/tradeoff.png")

    def _log_robustness(self, victims: list[Victim]) -> None:
        """ART's model-level metrics per (model, defence): parent metrics, a table and CLEVER's per-sample scores."""
        import mlflow

        from bridge.studies.evasion.model_metrics import compute_model_metrics

        cfg = self.plan.scenario.robustness
        if "seed" not in cfg.model_fields_set:
            cfg = cfg.model_copy(update={"seed": self.plan.scenario.seed})
        rows = []
        for v in victims:
            try:
                result = compute_model_metrics(v.model, v.x, v.y, cfg, prefix="")
            except Exception as exc:  # e.g. an ART metric that has no TensorFlow path: say so, keep the rest
                self.log(f"robustness metrics failed for {v.model.name}: {_one_line(exc)}")
                rows.append({"model": v.model.name, "defence": v.defence, "error": _one_line(exc)})
                continue
            rows.append({"model": v.model.name, "defence": v.defence, **result.metrics})
            mlflow.log_metrics({f"robustness.{k}.{v.model.name}": val for k, val in result.metrics.items()})
            if len(result.clever):
                mlflow.log_text(result.clever.to_csv(index=False), f"robustness/clever-{v.model.name}.csv")
        mlflow.log_text(pd.DataFrame(rows).to_csv(index=False), "robustness/metrics.csv")

    def _log_detector(self, outcomes: list[Outcome], victims: list[Victim]) -> None:
        """A detector per (model, defence), trained on one toolkit's examples and evaluated on every toolkit's."""
        import mlflow

        from bridge.defences.detector import DetectorConfig, detector_study_on

        spec = self.plan.scenario.detector
        cfg = DetectorConfig.model_validate(spec.model_dump(include=set(DetectorConfig.model_fields)))
        frames = []
        for v in victims:
            cells = [
                o for o in outcomes
                if o.ok and o.row["model"] == v.model.name and o.x_adv is not None
                and (o.spec.attack, o.spec.norm, o.spec.eps, o.spec.targeted) == (spec.attack, spec.norm, spec.eps,
                                                                                   "none")
            ]  # fmt: skip
            adv = {o.spec.toolkit: o.x_adv for o in cells}
            if spec.train_toolkit not in adv:
                self.log(f"detector: no {spec.train_toolkit} examples of {spec.attack} on {v.model.name}; skipped")
                continue
            success = {o.spec.toolkit: torch.as_tensor(o.per_sample["success"].to_numpy(bool)) for o in cells}
            table = detector_study_on(v.x, adv, cfg, success).assign(model=v.model.name, defence=v.defence)
            frames.append(table)
            for row in table.itertuples():
                mlflow.log_metric(f"detector.detection_rate.{row.toolkit}.{v.model.name}", row.detection_rate)
            mlflow.log_metric(
                f"detector.false_positive_rate.{v.model.name}", float(table["false_positive_rate"].iloc[0])
            )
        if frames:
            mlflow.log_text(pd.concat(frames, ignore_index=True).to_csv(index=False), "detector.csv")

    def _run_cell(self, cell: Cell, victim: Victim) -> Outcome:
        """Measure one cell and record it as a child run; a toolkit error becomes a FAILED child run."""
        import mlflow

        from bridge.attacks.adapter import Unsupported
        from bridge.report import plots

        spec = cell.spec
        if cell.unsupported:
            self.log(f"unsupported: {spec.label}: {cell.unsupported}")
            return Outcome(spec, base_row(cell, victim, f"unsupported: {cell.unsupported}"))
        try:
            measured, error = evaluate(cell, victim, self._keep(cell, victim)), None
        except Unsupported as exc:  # some refusals depend on the model (its bounds), known only at build time
            self.log(f"unsupported: {spec.label}: {exc}")
            return Outcome(spec, base_row(cell, victim, f"unsupported: {exc}"))
        except Exception as exc:
            measured, error = None, (exc, traceback.format_exc())
        row = measured.outcome.row if measured else base_row(cell, victim, "ok")
        try:
            with mlflow.start_run(
                experiment_id=self.experiment_id,
                run_name=self._run_name(cell, victim),
                nested=True,
                tags=self._cell_tags(cell, victim),
            ) as run:
                row["run_id"] = run.info.run_id
                mlflow.log_params({**spec.params(), "native_class": cell.translation.native})
                mlflow.log_dict(cell.translation.as_dict(), "translation.json")
                if error is not None:
                    mlflow.log_text(error[1], "error.txt")
                    mlflow.set_tags({"status": "failed", "error": _one_line(error[0])})
                    raise error[0]
                mlflow.log_metrics(measured.metrics)
                mlflow.set_tag("status", "ok")
                mlflow.log_text(measured.outcome.per_sample.to_csv(), "per_sample.csv")
                fig = plots.sample_grid(victim.x, measured.x_adv, victim.y, victim.clean_pred, measured.adv_pred,
                                        victim.model.bounds)  # fmt: skip
                mlflow.log_figure(fig, "samples.png")
                plots.plt.close(fig)
        except Exception as exc:
            self.log(f"failed: {spec.label}: {_one_line(exc)}")
            row["status"] = f"failed: {_one_line(exc)}"
            return Outcome(spec, row)
        return measured.outcome

    def _cell_tags(self, cell: Cell, victim: Victim) -> dict[str, str]:
        spec = cell.spec
        tags = {
            **self._tags(victim),
            "toolkit": spec.toolkit,
            "attack": spec.attack,
            "norm": spec.norm,
            "eps": "none" if spec.eps is None else f"{spec.eps:g}",
            "targeted": spec.targeted,
            "native_class": cell.translation.native,
        }
        if cell.translation.notes:
            tags["notes"] = cell.translation.notes
        if cell.origin != "scenario":
            tags["added_by"] = cell.origin
        if cell.translation.passthrough:
            tags["defaults"] = "toolkit"
        return tags

    def _log_consensus(
        self,
        consensus: pd.DataFrame,
        agreement: dict[tuple, pd.DataFrame],
        by_eps: pd.DataFrame,
        curves: pd.DataFrame,
    ) -> None:
        """Per-sample worst cases, toolkit agreement and security curves, as tables and plots on the parent."""
        import mlflow

        from bridge.report import plots

        if len(consensus):
            mlflow.log_text(consensus.to_csv(index=False), "consensus/worst_case_per_attack.csv")
            pairs = [
                {**dict(zip(GROUP, key, strict=True)), "toolkit_a": a, "toolkit_b": b, "agreement": m.loc[a, b]}
                for key, m in agreement.items()
                for a in m.index
                for b in m.columns
                if a < b
            ]
            mlflow.log_text(pd.DataFrame(pairs, columns=[*GROUP, "toolkit_a", "toolkit_b", "agreement"]).to_csv(
                index=False), "consensus/agreement.csv")  # fmt: skip
        if len(by_eps):
            mlflow.log_text(by_eps.to_csv(index=False), "consensus/worst_case_by_eps.csv")
            mlflow.log_table(by_eps, "consensus/worst_case_by_eps.json")
        if len(curves):
            mlflow.log_text(curves.to_csv(index=False), "security/curves.csv")
            for (model, attack, norm, targeted), rows in curves.groupby(["model", "attack", "norm", "targeted"]):
                suffix = "" if targeted == "none" else f"-{targeted}"
                fig = plots.security_curve(rows, f"{attack} {norm} ({model}): robust accuracy from distances")
                mlflow.log_figure(fig, f"plots/{model}/security_curve-{attack}-{norm}{suffix}.png")
                plots.plt.close(fig)

    def _log_checks(self, checks: pd.DataFrame) -> None:
        import mlflow

        failed = int((checks["status"] == "failed").sum())
        mlflow.log_text(checks.to_csv(index=False), "checks/checks.csv")
        mlflow.log_table(checks, "checks/checks.json")
        mlflow.set_tag("checks_failed", str(failed))
        mlflow.log_metric("checks_failed", failed)

    def _log_comparison(self, table: pd.DataFrame) -> None:
        import mlflow

        from bridge.report import plots
        from bridge.report.summary import summary_markdown

        counts = table["status"].str.extract(r"^(ok|failed|unsupported)")[0].value_counts()
        mlflow.log_metrics({f"cells_{k}": float(counts.get(k, 0)) for k in ("ok", "failed", "unsupported")})
        mlflow.log_text(table.to_csv(index=False), "comparison/comparison.csv")
        markdown = table.drop(columns=["run_id"]).to_markdown(index=False, floatfmt=".4g")
        mlflow.log_text(markdown, "comparison/comparison.md")
        mlflow.log_table(table.astype({"eps": "float64"}), "comparison/comparison.json")
        note = summary_markdown(table)
        mlflow.log_text(note, "comparison/summary.md")
        mlflow.set_tag("mlflow.note.content", f"# {self.plan.scenario.name}\n\n{note}")
        ok = table[(table["status"] == "ok") & table["eps"].notna()]
        for (model, attack, norm, targeted), rows in ok.groupby(["model", "attack", "norm", "targeted"]):
            title = f"{attack} {norm}" + ("" if targeted == "none" else f" targeted={targeted}") + f" ({model})"
            fig = plots.robustness_curve(rows, title)
            suffix = "" if targeted == "none" else f"-{targeted}"
            mlflow.log_figure(fig, f"plots/{model}/robust_accuracy_vs_eps-{attack}-{norm}{suffix}.png")
            plots.plt.close(fig)


def transfer_outcomes(outcomes: list[Outcome], victims: list[Victim]) -> list[Outcome]:
    """Non-adaptive evaluation: every example made on an undefended model, judged by each of its preprocessing-
    defended versions (the same samples). The rows say `evaluation: transfer`; their cost columns stay empty,
    since no attack ran on the defended model."""
    from bridge.studies.evasion.metrics import evaluate_cell

    by_name = {v.model.name: v for v in victims}
    made = [o for o in outcomes if o.ok and o.x_adv is not None and by_name[o.row["model"]].defence == NONE]
    out = []
    for v in victims:
        if not v.preprocessing:
            continue
        for o in made:
            source = by_name[o.row["model"]]
            if source.base != v.base:
                continue
            spec = o.spec
            targets = make_targets(spec.targeted, source.y, source.clean_logits, spec.seed)
            adv_pred = v.model.predict(o.x_adv, spec.batch_size).argmax(1)
            result = evaluate_cell(
                v.x, o.x_adv, v.y, v.clean_pred, adv_pred, norm=spec.norm, eps=spec.eps,
                fixed_budget=spec.kind == "fixed", bounds=v.model.bounds, targets=targets,
            )  # fmt: skip
            row = {k: o.row[k] for k in ("dataset", "attack", "norm", "eps", "targeted", "toolkit", "native_class")}
            row.update(model=v.model.name, defence=v.defence, evaluation="transfer", status="ok", **result.metrics)
            if spec.kind == "minimum":
                row["median_distance"] = median_distance(Outcome(spec, row, result.per_sample))
            out.append(Outcome(spec, row, result.per_sample))
    return out


def tradeoff_table(outcomes: list[Outcome], victims: list[Victim]) -> pd.DataFrame:
    """Per (model, defence) and (norm, eps): clean accuracy and the per-sample worst case over every attack and
    toolkit (transferred examples included), from `worst_case_by_eps`."""
    worst = worst_case_by_eps([o for o in outcomes if o.ok])
    info = pd.DataFrame(
        [
            {
                "model": v.model.name, "base_model": v.base, "defence": v.defence,
                "gradient": v.record.get("defence", {}).get("gradient", "-"),
                "clean_accuracy": float((v.clean_pred == v.y).float().mean()),
            }
            for v in victims
        ]
    )  # fmt: skip
    if worst.empty:
        return info
    columns = ["model", "norm", "eps", "robust_accuracy_worst_case", "cells"]
    return info.merge(worst[columns], on="model", how="left")


def keep_x_adv(spec: Any) -> bool:
    """Adversarial examples are kept in memory only where a check compares them across toolkits."""
    from bridge.studies.evasion.checks import DETERMINISTIC_PARITY

    return (spec.attack, spec.norm) in DETERMINISTIC_PARITY and not spec.random_start


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"[:500]


def run_scenario(
    scenario: str | Path | dict[str, Any],
    overrides: list[str] | None = None,
    *,
    progress: bool = False,
    log: Callable[[str], None] = print,
) -> pd.DataFrame:
    """Validate and run a scenario (a YAML path or the same structure as a dict); returns the comparison table.

    The table's `attrs` hold `tracking_uri`, `experiment_id`, `parent_run_id`, `failed`, `n_samples` and `checks`
    (the sanity checks as records: `pd.DataFrame(table.attrs["checks"])`).
    """
    plan = load_raw(scenario, overrides) if isinstance(scenario, dict) else load(scenario, overrides)
    return Runner(plan, progress=progress, log=log).run()
