"""The evasion study's tables, plots and checks, computed from persisted results alone.

`aggregate(results, meta)` is a pure function of the results (as the store gives them back) and the plan's meta;
it returns the comparison table, the checks and everything the parent run shows. A finished or resumed study is
re-aggregated from the store with the same function, so the numbers cannot depend on what was in memory.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd
import torch

from bridge.attacks.spec import AttackSpec
from bridge.engine.result import Aggregate, Result
from bridge.report import plots
from bridge.report.summary import summary_markdown
from bridge.studies.evasion.analysis import (
    GROUP,
    Outcome,
    security_curves,
    worst_case_by_eps,
    worst_case_per_group,
)
from bridge.studies.evasion.checks import Check, run_checks

TABLE_COLUMNS = [
    "model", "defence", "dataset", "attack", "norm", "eps", "targeted", "variant", "evaluation", "source",
    "toolkit", "native_class",
    "status",
    "clean_accuracy", "robust_accuracy", "robust_accuracy_worst_case", "attack_success_rate", "median_distance",
    "linf_mean", "linf_max", "l2_mean", "l2_max", "l0_mean", "budget_violations", "wall_time_s", "samples_per_s",
    "forward_calls", "backward_calls", "forward_samples", "backward_samples", "queries_per_sample",
    "queries_blocked", "run_id",
]  # fmt: skip


@dataclass
class Summary:
    table: pd.DataFrame  # the comparison table: one row per cell (direct and transferred), nothing merged
    checks: pd.DataFrame  # every sanity check per model
    record: Aggregate  # what the parent run shows


def outcome(result: Result) -> Outcome:
    """The analysis view of an attack or transfer result (its examples as a tensor where they were kept)."""
    x_adv = result.arrays.get("x_adv")
    spec = AttackSpec.model_validate(result.params["spec"])
    row = {**result.row, "run_id": result.run_id or None}
    notes = result.params.get("translation", {}).get("notes", "")
    return Outcome(spec, row, result.per_sample, None if x_adv is None else torch.tensor(x_adv), notes)


def aggregate(results: list[Result], meta: dict[str, Any]) -> Summary:
    by_key = {r.key: r for r in results}
    victims = [r for r in results if r.kind == "victim" and r.ok]
    direct = [_direct(e, by_key) for e in meta["rows"] if "row" in e or e["task"] in by_key]
    variant = {o.spec.model_dump_json(): o.row["variant"] for o in direct if o.spec is not None}
    # examples made on another model (a defended one's source, another victim, a stolen copy): failed ones too
    transferred = [outcome(r) for r in results if r.kind in ("transfer", "surrogate")]
    for o in transferred:
        o.row["variant"] = variant.get(o.spec.model_dump_json(), "")
    consensus, agreement = worst_case_per_group(direct)
    table = pd.DataFrame([o.row for o in direct + transferred], columns=TABLE_COLUMNS)
    checks = _checks(direct, transferred, victims, [r for r in results if r.kind == "detector" and r.ok])
    multi = len(victims) > 1
    # The worst case of a defended model counts the examples transferred to it: they are attacks on it too.
    by_eps = worst_case_by_eps([o for o in direct + transferred if o.ok])
    flagged = set(checks.loc[checks["status"] == "failed", "model"]) if len(checks) else set()
    record = (
        _comparison(table, meta["scenario"])
        | _consensus(consensus, agreement, security_curves(direct))
        | _worst_case(by_eps, {v.row["model"]: v.row["clean_accuracy"] for v in victims}, flagged)
        | _checks_record(checks)
        | _victims(victims, multi)
        | _detector([r for r in results if r.kind == "detector" and r.ok])
    )
    if meta["defences"] > 1:
        record = record | _tradeoff(tradeoff_table(by_eps, victims), flagged)
    if meta.get("matrix"):
        record = record | _transfer_matrix(transfer_matrix(direct + transferred), [v.row["model"] for v in victims])
    return Summary(table, checks, record)


def _direct(entry: dict[str, Any], by_key: dict[str, Result]) -> Outcome:
    """A direct row of the table: a cell's outcome (with the variant the plan named), or a cell that did not run."""
    if "row" in entry:
        return Outcome(None, dict(entry["row"]))
    found = outcome(by_key[entry["task"]])
    found.row["variant"] = entry.get("variant", "")
    return found


def _checks(
    direct: list[Outcome], transferred: list[Outcome], victims: list[Result], detectors: list[Result]
) -> pd.DataFrame:
    frames = []
    for v in victims:
        name = v.row["model"]
        probes = [Check(**c) for c in v.tables["checks"]]
        width = v.row["upper_bound"] - v.row["lower_bound"]
        mine = [o for o in direct if o.row["model"] == name]
        moved = [t for t in transferred if t.ok and t.row["model"] == name]
        flagged = [row for d in detectors if d.row["model"] == name for row in d.tables["detector"]]
        frames.append(run_checks(mine, probes, v.row["n_classes"], width, moved, flagged).assign(model=name))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def tradeoff_table(worst: pd.DataFrame, victims: list[Result]) -> pd.DataFrame:
    """Per (model, defence) and (norm, eps): clean accuracy and the per-sample worst case over every attack and
    toolkit (transferred examples included: `worst` is `worst_case_by_eps` of every ran cell)."""
    columns = ["model", "base_model", "defence", "gradient", "clean_accuracy"]
    info = pd.DataFrame([{k: v.row[k] for k in columns} for v in victims], columns=columns)
    if worst.empty:
        return info
    return info.merge(worst[["model", "norm", "eps", "robust_accuracy_worst_case", "cells"]], on="model", how="left")


def _comparison(table: pd.DataFrame, name: str) -> Aggregate:
    counts = table["status"].str.extract(r"^(ok|failed|unsupported)")[0].value_counts()
    note = summary_markdown(table)
    files: dict[str, str | bytes] = {
        "comparison/comparison.csv": table.to_csv(index=False),
        "comparison/comparison.md": table.drop(columns=["run_id"]).to_markdown(index=False, floatfmt=".4g"),
        "comparison/summary.md": note,
    }
    ok = table[(table["status"] == "ok") & table["eps"].notna()]
    for (model, attack, norm, targeted), rows in ok.groupby(["model", "attack", "norm", "targeted"]):
        title = f"{attack} {norm}" + ("" if targeted == "none" else f" targeted={targeted}") + f" ({model})"
        suffix = "" if targeted == "none" else f"-{targeted}"
        files[f"plots/{model}/robust_accuracy_vs_eps-{attack}-{norm}{suffix}.png"] = plots.png(
            plots.robustness_curve(rows, title)
        )
    return Aggregate(
        files,
        {"comparison/comparison.json": table.astype({"eps": "float64"})},
        {f"cells_{k}": float(counts.get(k, 0)) for k in ("ok", "failed", "unsupported")},
        {"mlflow.note.content": f"# {name}\n\n{note}"},
    )


def _consensus(consensus: pd.DataFrame, agreement: dict[tuple, pd.DataFrame], curves: pd.DataFrame) -> Aggregate:
    """Per-sample worst cases over toolkits, toolkit agreement and security curves."""
    out = Aggregate()
    if len(consensus):
        out.files["consensus/worst_case_per_attack.csv"] = consensus.to_csv(index=False)
        pairs = [
            {**dict(zip(GROUP, key, strict=True)), "toolkit_a": a, "toolkit_b": b, "agreement": m.loc[a, b]}
            for key, m in agreement.items()
            for a in m.index
            for b in m.columns
            if a < b
        ]
        frame = pd.DataFrame(pairs, columns=[*GROUP, "toolkit_a", "toolkit_b", "agreement"])
        out.files["consensus/agreement.csv"] = frame.to_csv(index=False)
    if len(curves):
        out.files["security/curves.csv"] = curves.to_csv(index=False)
        for (model, attack, norm, targeted), rows in curves.groupby(["model", "attack", "norm", "targeted"]):
            suffix = "" if targeted == "none" else f"-{targeted}"
            fig = plots.security_curve(rows, f"{attack} {norm} ({model}): robust accuracy from distances")
            out.files[f"plots/{model}/security_curve-{attack}-{norm}{suffix}.png"] = plots.png(fig)
    return out


def _worst_case(by_eps: pd.DataFrame, clean: dict[str, float], flagged: set[str]) -> Aggregate:
    """Per threat model, the per-sample worst case over every attack and toolkit vs eps: table and one plot per
    norm (flagged models, whose checks failed, marked)."""
    out = Aggregate()
    if len(by_eps):
        out.files["consensus/worst_case_by_eps.csv"] = by_eps.to_csv(index=False)
        out.tables["consensus/worst_case_by_eps.json"] = by_eps
        for norm, rows in by_eps.groupby("norm"):
            title = f"{norm}: per-sample worst case over every attack and toolkit"
            out.files[f"plots/worst_case_vs_eps-{norm}.png"] = plots.png(
                plots.worst_case_curve(rows, title, clean, flagged)
            )
    return out


MATRIX_KEYS = ["attack", "norm", "eps", "targeted", "variant", "toolkit"]


def transfer_matrix(outcomes: list[Outcome]) -> pd.DataFrame:
    """`transfer: models` as a long table: per spec and toolkit, the robust accuracy and success rate of every
    target model on every source model's examples (source == target: the direct attack). Every cell that ran is a
    row; a pair whose cell failed or did not run has none."""
    columns = ["source", "target", *MATRIX_KEYS, "evaluation", "robust_accuracy", "attack_success_rate", "run_id"]
    rows = [{**{k: o.row[k] for k in columns if k != "target"}, "target": o.row["model"]} for o in outcomes if o.ok]
    return pd.DataFrame(rows, columns=columns)


def _transfer_matrix(matrix: pd.DataFrame, models: list[str]) -> Aggregate:
    """The source x target matrix: its table, and one heat-map per spec (a panel per toolkit)."""
    out = Aggregate({"transfer/matrix.csv": matrix.to_csv(index=False)}, {"transfer/matrix.json": matrix})
    for (attack, norm, eps, targeted, variant), rows in matrix.groupby(MATRIX_KEYS[:-1], dropna=False):
        budget = "" if pd.isna(eps) else f" eps={eps:g}"
        aim = "" if targeted == "none" else f" targeted={targeted}"
        title = f"{attack} {norm}{budget}{aim}" + (f" [{variant}]" if variant else "")
        name = "-".join(p for p in (attack, norm, budget.strip() or "min", aim.strip(), variant) if p)
        out.files[f"plots/transfer/{name.replace(' ', '_')}.png"] = plots.png(
            plots.transfer_matrix(rows, f"{title}: transfer across models", models)
        )
    return out


def _checks_record(checks: pd.DataFrame) -> Aggregate:
    failed = int((checks["status"] == "failed").sum()) if len(checks) else 0
    return Aggregate(
        {"checks/checks.csv": checks.to_csv(index=False)},
        {"checks/checks.json": checks},
        {"checks_failed": failed},
        {"checks_failed": str(failed)},
    )


def _victims(victims: list[Result], multi: bool) -> Aggregate:
    """Clean accuracy per model, and ART's model-level metrics where `robustness:` asked for them."""
    out = Aggregate()
    rows = []
    for v in victims:
        name = v.row["model"]
        out.metrics[f"clean_accuracy.{name}" if multi else "clean_accuracy"] = v.row["clean_accuracy"]
        robustness = {k.removeprefix("robustness."): x for k, x in v.metrics.items() if k.startswith("robustness.")}
        if "robustness_error" in v.row:
            rows.append({"model": name, "defence": v.row["defence"], "error": v.row["robustness_error"]})
        elif robustness:
            rows.append({"model": name, "defence": v.row["defence"], **robustness})
            out.metrics |= {f"robustness.{k}.{name}": x for k, x in robustness.items()}
        if v.tables.get("clever"):
            out.files[f"robustness/clever-{name}.csv"] = pd.DataFrame(v.tables["clever"]).to_csv(index=False)
    if rows:
        out.files["robustness/metrics.csv"] = pd.DataFrame(rows).to_csv(index=False)
    return out


def _detector(results: list[Result]) -> Aggregate:
    out = Aggregate()
    frames = [pd.DataFrame(r.tables["detector"]) for r in results]
    for r in results:
        name = r.row["model"]
        out.metrics |= {f"detector.{k}.{name}": x for k, x in r.metrics.items()}
    if frames:
        out.files["detector.csv"] = pd.concat(frames, ignore_index=True).to_csv(index=False)
    return out


def _tradeoff(tradeoff: pd.DataFrame, flagged: set[str]) -> Aggregate:
    """Clean vs worst-case robust accuracy, one point per (model, defence), flagged ones marked: table and plot."""
    out = Aggregate({"tradeoff.csv": tradeoff.to_csv(index=False)})
    if len(tradeoff):
        out.files["plots/tradeoff.png"] = plots.png(plots.tradeoff(tradeoff, flagged))
    return out
