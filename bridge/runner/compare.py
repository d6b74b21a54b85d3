"""What changed between two studies (`advbridge compare RUN_A RUN_B`): cells added and removed, clean accuracy per
model, robust accuracy (and median distance) of the cells in both, and checks whose status changed.

A cell is its identity columns (`results.IDENTITY`); two cells are never merged. A number "moved" only when its
change is beyond noise at `alpha`: McNemar's exact test on the per-sample outcomes where both studies judged the same
samples (the same labels in the same order), else Fisher's exact test on the two proportions. Pure functions over
two `StudyResults`, except `log_comparison`, which records the result on study B's parent run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from bridge.engine.result import Aggregate
from bridge.runner.results import IDENTITY, StudyResults

MCNEMAR, FISHER = "McNemar", "Fisher"
TESTS = {
    MCNEMAR: "McNemar's exact test on the per-sample outcomes (both studies judged the same samples)",
    FISHER: "Fisher's exact test on the two proportions (the studies judged different samples)",
}


def mcnemar_p(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sided exact McNemar p-value of paired booleans: a binomial test (p=1/2) on the discordant pairs."""
    from scipy.stats import binomtest

    a, b = np.asarray(a, bool), np.asarray(b, bool)
    only_a, only_b = int((a & ~b).sum()), int((~a & b).sum())
    return 1.0 if only_a + only_b == 0 else float(binomtest(only_a, only_a + only_b, 0.5).pvalue)


def fisher_p(k_a: int, n_a: int, k_b: int, n_b: int) -> float:
    """Two-sided Fisher's exact p-value that k_a/n_a and k_b/n_b are the same proportion."""
    from scipy.stats import fisher_exact

    return float(fisher_exact([[k_a, n_a - k_a], [k_b, n_b - k_b]]).pvalue)


def noise_test(a: pd.DataFrame, b: pd.DataFrame, column: str) -> tuple[float, str]:
    """(p-value, test) that boolean per-sample `column` differs between two per-sample tables: McNemar when they
    judged the same samples (same `label`s in the same order), else Fisher on the proportions."""
    x, y = a[column].to_numpy(bool), b[column].to_numpy(bool)
    if len(a) == len(b) and np.array_equal(a["label"].to_numpy(), b["label"].to_numpy()):
        return mcnemar_p(x, y), MCNEMAR
    return fisher_p(int(x.sum()), len(x), int(y.sum()), len(y)), FISHER


@dataclass
class Comparison:
    run_a: str
    run_b: str
    alpha: float
    cells: pd.DataFrame  # one row per cell of either study: identity, `where` (both, added, removed), A/B numbers
    clean: pd.DataFrame  # per model: clean accuracy in A and B, the difference and its test
    checks: pd.DataFrame  # the checks whose status differs (or that one study lacks)
    studies: tuple[str, str]  # one line about each: experiment, samples


def _keys(table: pd.DataFrame, columns: list[str]) -> list[tuple]:
    """Each row's identity (NaN as None), with its occurrence number so that two equal rows stay two cells."""
    seen: dict[tuple, int] = {}
    keys = []
    for row in table[columns].itertuples(index=False):
        key = tuple(None if _missing(v) else v for v in row)
        seen[key] = seen.get(key, 0) + 1
        keys.append((*key, seen[key]))
    return keys


def _spec_change(a: dict[str, Any], b: dict[str, Any]) -> str:
    """The spec fields in which B's cell differs from A's (`steps 10→20`)."""
    return ", ".join(f"{k} {a.get(k)}→{b.get(k)}" for k in sorted(a.keys() | b.keys()) if a.get(k) != b.get(k))


def compare(a: StudyResults, b: StudyResults, alpha: float = 0.05) -> Comparison:
    """What changed from study `a` to study `b`, each change judged against noise at `alpha`."""
    columns = [c for c in IDENTITY if c in a.table.columns and c in b.table.columns]
    rows_a = dict(zip(_keys(a.table, columns), a.table.to_dict("records"), strict=True))
    rows_b = dict(zip(_keys(b.table, columns), b.table.to_dict("records"), strict=True))
    out = []
    for key in [*rows_a, *(k for k in rows_b if k not in rows_a)]:
        ra, rb = rows_a.get(key), rows_b.get(key)
        row: dict[str, Any] = dict(zip(columns, key, strict=False))
        row["where"] = "both" if ra and rb else "removed" if ra else "added"
        for side, r in (("a", ra), ("b", rb)):
            r = r or {}
            row |= {f"status_{side}": r.get("status"), f"run_id_{side}": r.get("run_id"),
                    f"robust_accuracy_{side}": r.get("robust_accuracy"),
                    f"median_distance_{side}": r.get("median_distance")}  # fmt: skip
        row |= {"difference": np.nan, "p_value": np.nan, "test": "", "moved": False, "spec_changed": ""}
        ca, cb = a.by_run.get(row["run_id_a"] or ""), b.by_run.get(row["run_id_b"] or "")
        if ca is not None and cb is not None:
            row["spec_changed"] = _spec_change(ca.params.get("spec", {}), cb.params.get("spec", {}))
            if ca.ok and cb.ok and ca.per_sample is not None and cb.per_sample is not None:
                row["difference"] = row["robust_accuracy_b"] - row["robust_accuracy_a"]
                row["p_value"], row["test"] = noise_test(ca.per_sample, cb.per_sample, "robust")
                row["moved"] = row["p_value"] < alpha
        out.append(row)
    cells = pd.DataFrame(out)
    return Comparison(a.run_id, b.run_id, alpha, cells, _clean(a, b, alpha), _checks(a, b),
                      (_about(a), _about(b)))  # fmt: skip


def _about(s: StudyResults) -> str:
    """`<run id>` (its run name, which says its scenario, samples and start; its experiment)."""
    return f"`{s.run_id}` ({s.store.get(s.run_id).info.run_name}; experiment {s.experiment})"


def _clean_sample(s: StudyResults, model: str) -> pd.DataFrame | None:
    """Any ok cell's per-sample table on `model`: every cell of a model shares its clean predictions."""
    for r in s.results:
        if r.kind == "attack" and r.ok and r.row.get("model") == model and r.per_sample is not None:
            return r.per_sample
    return None


def _clean(a: StudyResults, b: StudyResults, alpha: float) -> pd.DataFrame:
    rows = []
    for model in [*a.clean, *(m for m in b.clean if m not in a.clean)]:
        row = {"model": model, "clean_accuracy_a": a.clean.get(model), "clean_accuracy_b": b.clean.get(model),
               "difference": np.nan, "p_value": np.nan, "test": "", "moved": False}  # fmt: skip
        if model in a.clean and model in b.clean:
            row["difference"] = b.clean[model] - a.clean[model]
            pa, pb = _clean_sample(a, model), _clean_sample(b, model)
            if pa is not None and pb is not None:
                row["p_value"], row["test"] = noise_test(pa, pb, "clean_correct")
                row["moved"] = row["p_value"] < alpha
        rows.append(row)
    return pd.DataFrame(rows, columns=["model", "clean_accuracy_a", "clean_accuracy_b", "difference", "p_value",
                                       "test", "moved"])  # fmt: skip


def _checks(a: StudyResults, b: StudyResults) -> pd.DataFrame:
    """The checks (per model and name) whose status differs between the studies, or that one of them lacks."""
    columns = ["model", "name", "status_a", "status_b", "detail_b"]

    def status(checks: pd.DataFrame) -> dict[tuple[str, str], dict[str, Any]]:
        return {(c["model"], c["name"]): c for c in checks.to_dict("records")} if len(checks) else {}

    sa, sb = status(a.checks), status(b.checks)
    rows = [
        [*key, sa.get(key, {}).get("status", "-"), sb.get(key, {}).get("status", "-"), sb.get(key, {}).get("detail")]
        for key in [*sa, *(k for k in sb if k not in sa)]
        if sa.get(key, {}).get("status") != sb.get(key, {}).get("status")
    ]
    return pd.DataFrame(rows, columns=columns)


# --- the text -----------------------------------------------------------------------------------------------------


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _num(value: Any, form: str = ".3f") -> str:
    return "-" if _missing(value) else "inf" if math.isinf(value) else format(value, form)


def _diff(value: Any) -> str:
    return _num(value, "+.3f")


def _p(value: Any) -> str:
    return _num(value, ".3g")


def cell_label(row: dict[str, Any]) -> str:
    """`small_cnn · pgd-linf eps=0.1 · steps=20 · art` (and `targeted=`, `transferred from` where they apply)."""
    eps = "" if row.get("eps") is None else f" eps={row['eps']:g}"
    targeted = "" if row.get("targeted") in (None, "none") else f" targeted={row['targeted']}"
    transfer = f"transferred from {row.get('source') or '?'}" if row.get("evaluation") == "transfer" else ""
    parts = [row["model"], f"{row['attack']}-{row['norm']}{eps}{targeted}", row.get("variant") or "", transfer,
             row["toolkit"]]  # fmt: skip
    return " · ".join(p for p in parts if p)


def _status(a: Any, b: Any) -> str:
    return str(a) if a == b else f"{a} → {b}"


def markdown(c: Comparison) -> str:
    """The comparison as markdown: a summary, then clean accuracy, the cells in both, added, removed, checks."""
    cells = c.cells.to_dict("records")
    both = [r for r in cells if r["where"] == "both"]
    added = [r for r in cells if r["where"] == "added"]
    removed = [r for r in cells if r["where"] == "removed"]
    moved = [r for r in both if r["moved"]]
    used = sorted({r["test"] for r in both if r["test"]} | set(c.clean["test"][c.clean["test"] != ""]))
    tests = "; ".join(TESTS[t] for t in used) or "none (no cell ran in both)"
    lines = [
        "# Comparison of two studies", "",
        f"- A: {c.studies[0]}", f"- B: {c.studies[1]}",
        f"- Noise: a change is called moved when p < alpha = {c.alpha:g}. Tests used: {tests}.", "",
        f"**{len(both)} cells in both, {len(moved)} moved; {len(added)} added; {len(removed)} removed; "
        f"clean accuracy moved for {int(c.clean['moved'].sum())} of {len(c.clean)} models; "
        f"{len(c.checks)} checks changed status.**", "",
        "## Clean accuracy", "",
    ]  # fmt: skip
    clean = [[r["model"], _num(r["clean_accuracy_a"]), _num(r["clean_accuracy_b"]), _diff(r["difference"]),
              _p(r["p_value"]), r["test"] or "-", "**moved**" if r["moved"] else ""]
             for r in c.clean.to_dict("records")]  # fmt: skip
    lines += [_table(["model", "A", "B", "B − A", "p", "test", ""], clean), ""]
    if both:
        minimum = any(not _missing(r[f"median_distance_{s}"]) for r in both for s in "ab")
        head = ["cell", "status", "robust A", "robust B", "B − A", "p", "test", "", "spec changed"]
        if minimum:
            head[5:5] = ["median dist. A", "median dist. B"]
        body = []
        for r in both:
            line = [cell_label(r), _status(r["status_a"], r["status_b"]), _num(r["robust_accuracy_a"]),
                    _num(r["robust_accuracy_b"]), _diff(r["difference"]), _p(r["p_value"]), r["test"] or "-",
                    "**moved**" if r["moved"] else "", r["spec_changed"] or ""]  # fmt: skip
            if minimum:
                line[5:5] = [_num(r["median_distance_a"]), _num(r["median_distance_b"])]
            body.append(line)
        lines += ["## Cells in both", "", _table(head, body), ""]
    for title, rows, side in (("Added (in B only)", added, "b"), ("Removed (in A only)", removed, "a")):
        if rows:
            body = [[cell_label(r), r[f"status_{side}"], _num(r[f"robust_accuracy_{side}"])] for r in rows]
            lines += [f"## {title}", "", _table(["cell", "status", "robust accuracy"], body), ""]
    if len(c.checks):
        body = [[r["model"], r["name"], r["status_a"], r["status_b"], r["detail_b"] or ""]
                for r in c.checks.to_dict("records")]  # fmt: skip
        lines += ["## Checks whose status changed", "", _table(["model", "check", "A", "B", "detail (B)"], body), ""]
    return "\n".join(lines)


def _table(head: list[str], rows: list[list[Any]]) -> str:
    esc = [[str(v).replace("|", "\\|").replace("\n", " ") for v in row] for row in [head, *rows]]
    return "\n".join(["| " + " | ".join(esc[0]) + " |", "|" + "---|" * len(head)] +
                     ["| " + " | ".join(r) + " |" for r in esc[1:]])  # fmt: skip


def log_comparison(b: StudyResults, c: Comparison, text: str) -> None:
    """Record the comparison on study B's parent run: `compare/<RUN_A>.md` and `compare/<RUN_A>.csv` (the cells)."""
    files: dict[str, str | bytes] = {
        f"compare/{c.run_a}.md": text,
        f"compare/{c.run_a}.csv": c.cells.to_csv(index=False),
    }
    b.store.write(b.run_id, Aggregate(files))
