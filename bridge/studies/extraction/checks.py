"""The extraction study's sanity checks, on its table alone: signs that an extraction should not be trusted."""

from __future__ import annotations

import pandas as pd

from bridge.studies.evasion.checks import Check, checks_per_model
from bridge.studies.extraction.metrics import tolerance

BASELINE = "true_labels"  # the attack column of the baseline's rows


def not_below_true_labels(rows: pd.DataFrame) -> Check:
    """At the largest budget, every attack's fidelity must reach that of the same network trained on as many true
    labels (beyond chance): the victim's own answers are at least as good a teacher of the victim as the truth. An
    attack below it is broken (queries mislabelled, the thief not trained, the answers misread)."""
    check = Check("extraction_not_below_true_labels", "at the largest budget, each attack's fidelity is not below "
                  "that of the thief architecture trained on as many true labels")  # fmt: skip
    ok = rows[rows["status"] == "ok"]
    if ok.empty:
        return check.skip("no extraction task ran")
    top = ok[ok["budget"] == ok["budget"].max()]
    base, attacks = top[top["attack"] == BASELINE], top[top["attack"] != BASELINE]
    if base.empty or attacks.empty:
        return check.skip(f"no attack and baseline at the largest budget ({int(ok['budget'].max())}) both ran")
    reference = float(base["fidelity"].iloc[0])
    tol = tolerance(reference, int(base["n_samples"].iloc[0]))
    tripped = [f"{r.attack} ({r.fidelity:.3f} < {reference:.3f})" for r in attacks.itertuples()
               if r.fidelity < reference - tol]  # fmt: skip
    detail = f"true-label baseline fidelity {reference:.3f} at budget {int(top['budget'].iloc[0])}, tolerance {tol:.3f}"
    if tripped:
        return check.trip(tripped, "the attack steals less than the truth teaches: " + detail)
    check.detail = detail
    return check


def queries_match_budget(rows: pd.DataFrame) -> Check:
    """The victim's own counters must have seen exactly the budget: more is a leak past it, fewer a budget the
    attack did not spend (a pool smaller than the budget)."""
    check = Check("queries_match_budget", "the victim answered exactly the budget's queries in every extraction")
    ran = rows[(rows["status"] == "ok") & (rows["attack"] != BASELINE)]
    if ran.empty:
        return check.skip("no extraction task ran")
    tripped = [f"{r.attack} budget {int(r.budget)} ({int(r.queries)} queries)" for r in ran.itertuples()
               if r.queries != r.budget]  # fmt: skip
    return check.trip(tripped, "queries counted on the victim differ from the budget") if tripped else check


def run_checks(table: pd.DataFrame) -> pd.DataFrame:
    """Every check per model: name, question, status, cells, detail, model."""
    return checks_per_model(table, "model", lambda rows: [not_below_true_labels(rows), queries_match_budget(rows)])
