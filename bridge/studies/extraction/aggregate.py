"""The extraction study's table, curves and checks, computed from persisted results alone (a pure function of the
results and the plan's meta, so a re-aggregated study shows exactly what the first run showed)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from bridge.engine.result import Aggregate, Result
from bridge.studies.extraction.checks import BASELINE, run_checks
from bridge.studies.extraction.plots import curves

KIND = "extraction"
TABLE_COLUMNS = [
    "model", "defence", "dataset", "attack", "toolkit", "native_class", "status", "budget", "queries",
    "queries_per_budget", "test_accuracy", "fidelity", "fidelity_ood", "victim_accuracy", "n_samples", "n_ood",
    "wall_time_s", "run_id",
]  # fmt: skip
SHOWN = ["model", "attack", "budget", "queries", "test_accuracy", "fidelity", "fidelity_ood", "victim_accuracy",
         "status"]  # fmt: skip


@dataclass
class Summary:
    table: pd.DataFrame  # one row per task: each attack at each budget, and the true-label baseline per budget
    checks: pd.DataFrame
    record: Aggregate
    markdown: str  # the report's section: the table with its legend


def legend(queries: str, ood: str | None) -> str:
    """What each number of the table means."""
    off = f"on the out-of-distribution set ({ood})" if ood else "off the distribution (not measured: no `ood:` set)"
    return (
        f"Each attack stole every victim at each query budget, its queries drawn from {queries}. `queries`: the "
        "forward passes the victim answered, counted by the bridge on the victim itself (it must equal the budget); "
        "`test_accuracy`: the thief's accuracy on the evaluation samples (`data:`); `fidelity`: the share of those "
        f"samples on which the thief gives the victim's label; `fidelity_ood`: the same agreement {off}; "
        "`victim_accuracy`: the victim's own accuracy, for reference. `true_labels` is the baseline: the same thief "
        "architecture, trained the same way on as many of the query samples with their true labels (no query to "
        "the victim); an attack whose fidelity at the largest budget falls below it is broken."
    )


def aggregate(results: list[Result], meta: dict[str, Any]) -> Summary:
    rows = [{**r.row, "run_id": r.run_id or None} for r in results]
    table = pd.DataFrame(rows, columns=TABLE_COLUMNS)
    order = {name: i for i, name in enumerate([*meta["attacks"], BASELINE])}
    table = table.sort_values(["model", "attack", "budget"], key=lambda c: c.map(order) if c.name == "attack" else c,
                              kind="stable", ignore_index=True)  # fmt: skip
    checks = run_checks(table)
    shown = table[SHOWN].astype({"queries": "Int64"}).to_markdown(index=False, floatfmt=".3f")
    markdown = f"{legend(meta['queries'], meta['ood'])}\n\n{shown}\n"
    files: dict[str, str | bytes] = {f"{KIND}/table.csv": table.to_csv(index=False), f"{KIND}/table.md": markdown,
                                     f"{KIND}/checks.csv": checks.to_csv(index=False)}  # fmt: skip
    metrics: dict[str, float] = {f"{KIND}.checks_failed": float((checks["status"] == "failed").sum())}
    ok = table[table["status"] == "ok"]
    for model, mine in ok.groupby("model", sort=False):
        files[f"{KIND}/plots/{model}/accuracy_fidelity_vs_queries.png"] = curves(
            mine, f"model extraction of {model}: queries from {meta['queries']}", meta["ood"]
        )
        top = mine[mine["budget"] == mine["budget"].max()]
        for r in top.itertuples():
            metrics[f"{KIND}.fidelity.{r.attack}.{model}"] = float(r.fidelity)
            metrics[f"{KIND}.test_accuracy.{r.attack}.{model}"] = float(r.test_accuracy)
    record = Aggregate(files, {f"{KIND}/table.json": table, f"{KIND}/checks.json": checks}, metrics)
    return Summary(table, checks, record, markdown)
