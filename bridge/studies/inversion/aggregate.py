"""The inversion study's table, checks and parent record, computed from persisted results alone."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from bridge.engine.result import Aggregate, Result
from bridge.studies.evasion.checks import Check
from bridge.studies.inversion.run import grid_png

COLUMNS = ["model", "defence", "attack", "toolkit", "native_class", "status", "classes", "init",
           "evaluator_accuracy_on_reconstructions", "nearest_mean_accuracy", "victim_confidence_mean",
           "distance_to_class_mean_mean", "evaluator_clean_accuracy", "evaluator", "wall_time_s", "run_id"]  # fmt: skip
# Below this accuracy on the evaluation samples, the evaluator's verdict on a reconstruction says nothing.
EVALUATOR_MIN_ACCURACY = 0.8
LEGEND = (
    "MIFace (ART) reconstructs one input per class from the victim's class gradients. The bridge judges each: "
    "`evaluator_accuracy_on_reconstructions` is the share an independently trained evaluator model assigns to the "
    "class (the literature's proxy for a recognisable inversion), `nearest_mean_accuracy` the share closest (L2) to "
    "their own class's mean training image, `victim_confidence_mean` the victim's mean probability of the class "
    "(high even for unrecognisable inputs: not a measure of leakage), `distance_to_class_mean_mean` the mean L2 "
    "distance to that mean image; `evaluator_clean_accuracy` is the evaluator's accuracy on the evaluation samples."
)


@dataclass
class Summary:
    table: pd.DataFrame  # one row per (model, defence)
    checks: pd.DataFrame
    record: Aggregate

    @property
    def markdown(self) -> str:
        shown = self.table.drop(columns=["run_id"]).map(lambda v: f"{v:.3f}" if isinstance(v, float) else v)
        return f"{LEGEND}\n\n{shown.to_markdown(index=False, disable_numparse=True)}\n"


def evaluator_competent(row: dict[str, Any]) -> Check:
    """The evaluator's judgement counts only if it classifies real samples well."""
    question = f"the evaluator classifies the evaluation samples with accuracy >= {EVALUATOR_MIN_ACCURACY}"
    check = Check("inversion_evaluator_competent", question)
    accuracy = row.get("evaluator_clean_accuracy")
    if accuracy is None or pd.isna(accuracy):
        return check.skip("the inversion did not run")
    check.detail = f"evaluator accuracy {accuracy:.3f}"
    if accuracy < EVALUATOR_MIN_ACCURACY:
        return check.trip(["miface"], f"evaluator accuracy {accuracy:.3f}: its verdicts on reconstructions say nothing")
    return check


def aggregate(results: list[Result], meta: dict[str, Any]) -> Summary:
    rows = [{**r.row, "run_id": r.run_id or None} for r in results]
    table = pd.DataFrame(rows, columns=COLUMNS)
    checks = pd.DataFrame([{**vars(evaluator_competent(row)), "model": row["model"]} for row in rows])
    files: dict[str, str | bytes] = {"inversion/table.csv": table.to_csv(index=False)}
    for r in results:
        if r.ok:
            files[f"inversion/{r.row['model']}.png"] = grid_png(r.arrays, r.per_sample)
    metrics = {f"inversion.{k}.{r['model']}": float(r[k]) for r in rows if r["status"] == "ok"
               for k in ("evaluator_accuracy_on_reconstructions", "nearest_mean_accuracy")}  # fmt: skip
    return Summary(table, checks, Aggregate(files, {"inversion/table.json": table}, metrics))
