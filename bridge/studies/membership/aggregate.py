"""The membership study's table, check, ROC plots and markdown, computed from persisted results alone."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from bridge.engine.result import Aggregate, Result
from bridge.report import plots
from bridge.studies.evasion.checks import Check
from bridge.studies.membership.roc import LEVELS, NULL_SES, chance_tolerance, roc

METRICS = ["auc", "balanced_accuracy", *LEVELS, "fpr_floor", "n_members", "n_nonmembers"]
LEAKAGE = ["leakage_mean", "leakage_max", "leaking_share"]  # SHAPr's and PDTP's rows (ART's per-member leakage)
TABLE_COLUMNS = ["model", "defence", "dataset", "attack", "toolkit", "evaluated_on", "shadow_models", "status",
                 *METRICS, *LEAKAGE, "wall_time_s", "run_id"]  # fmt: skip
MODEL_COLUMNS = ["model", "defence", "role", "n_train", "train_accuracy", "member_accuracy", "nonmember_accuracy",
                 "dp_epsilon"]  # fmt: skip

LEGEND = (
    "Each row is one attack on the target (trained by the bridge on exactly the members) or on the control (trained "
    "on as many other train-split samples, never on a member or non-member: every attack on it should be at chance). "
    "Members and non-members are disjoint, equal in number and drawn with the study's seed; each is cut in halves: "
    "ART's black-box attack is fitted on one half (it needs labelled members), and every attack is scored on the "
    "other half. gap, blackbox and shadow are ART's (toolkit art); lira is the bridge's own LiRA (Carlini et al. "
    "2022) with `shadow_models` shadow models trained by the bridge (a global variance below 64 shadows). The bridge "
    "computes every number from the attacks' per-sample scores: auc, the ROC's area; balanced_accuracy, the best "
    "(TPR + TNR) / 2 over thresholds (the threshold chosen with the labels: an upper bound); tpr_at_fpr_0.001 and "
    "tpr_at_fpr_0.01, the TPR at 0.1 % and 1 % false positives. A false-positive rate below fpr_floor (1 / the "
    "non-members scored) cannot be resolved: there the TPR is the one at zero false positives, marked * here. "
    "shapr is ART's SHAPr (Duddu et al. 2021, toolkit art), a per-sample leakage score, not an attack: each member's "
    "Shapley value to a KNN on the model's output probabilities that labels the non-members (above 0: the member "
    "leaks, ART says); it scores every member and no non-member, so it has no ROC: its auc, balanced_accuracy, TPR "
    "and fpr_floor are empty, and leakage_mean, leakage_max and leaking_share (the share of members above 0) are its "
    "own (empty for the attacks); n_nonmembers is the held-out set it is computed against. ART's values are a 1-NN's "
    "Shapley values, so leakage_mean is that 1-NN's accuracy on the held-out set (it tracks utility as much as "
    "leakage): leakage_max and leaking_share, and the per-member scores, are the per-sample signal. On the control, "
    "which never saw the members, the same samples give the scores of samples a model did not train on. "
    "pdtp-ratio and pdtp-difference are ART's PDTP (Long et al. 2017, toolkit art), also a per-member leakage row: "
    "for each of `samples` members (drawn with the seed; n_members) ART retrains the target's architecture without "
    "it, num_iter times, through its own loop with the target's optimizer, schedule, loss, epochs and batch size "
    "but its own initialisation and shuffle, and takes the largest ratio (either way) or difference of the two "
    "models' output probabilities in bins of 0.01, over every training sample and class (ratio 1, difference 0: "
    "nothing moved); each member's score is the average over the retrainings, leaking_share the share above 1 "
    "(ratio) or 0 (difference). On the control each member is added to the control's training set and removed "
    "again, so ART retrains on exactly the control's data: the control's values are what retraining alone moves, "
    "and a target at its control shows no leak PDTP can tell from the retraining's randomness."
)


@dataclass
class Summary:
    table: pd.DataFrame  # one row per attack task (target and control), nothing merged
    checks: pd.DataFrame
    record: Aggregate
    models: pd.DataFrame  # the target's and the control's accuracies (how much the target overfits)

    @property
    def markdown(self) -> str:
        """The section the report embeds: the table (low-FPR values below the resolution marked) and its legend."""
        shown = self.table.drop(columns=["dataset", "n_members", "n_nonmembers", "wall_time_s", "run_id"]).copy()
        shown["shadow_models"] = ["" if pd.isna(v) else str(int(v)) for v in shown["shadow_models"]]
        for name, level in LEVELS.items():
            below = self.table["fpr_floor"] > level
            shown[name] = [f"{v:.3g}*" if b and pd.notna(v) else ("" if pd.isna(v) else f"{v:.3g}")
                           for v, b in zip(self.table[name], below, strict=True)]  # fmt: skip
        for name in ("auc", "balanced_accuracy", "fpr_floor", *LEAKAGE):  # empty where a row has none
            shown[name] = ["" if pd.isna(v) else f"{v:.3g}" for v in self.table[name]]
        parts = [shown.to_markdown(index=False, floatfmt=".3g"), LEGEND]
        if len(self.models):
            parts.append("The models' accuracy on their own training set, the members and the non-members:\n\n"
                         + self.models.to_markdown(index=False, floatfmt=".3g"))  # fmt: skip
        return "\n\n".join(parts)


def scored(result: Result) -> bool:
    """Whether an attack result has membership scores with an ROC (SHAPr's and PDTP's leakage rows have none)."""
    return pd.notna(result.row.get("auc"))


def aggregate(results: list[Result], meta: dict[str, Any]) -> Summary:
    by_key = {r.key: r for r in results}
    rows = [dict(e["row"]) if "row" in e else {**by_key[e["task"]].row, "run_id": by_key[e["task"]].run_id or None}
            for e in meta["rows"] if "row" in e or e["task"] in by_key]  # fmt: skip
    table = pd.DataFrame(rows, columns=TABLE_COLUMNS)
    models = pd.DataFrame([r.row for r in results if r.kind == "model" and r.ok], columns=MODEL_COLUMNS)
    attacks = [r for r in results if r.kind == "attack" and r.ok]
    checks = control_checks(attacks, meta["control"])
    record = _record(table, models, checks, attacks)
    return Summary(table, checks, record, models)


def control_checks(attacks: list[Result], control: bool) -> pd.DataFrame:
    """`membership_control_at_chance` per model: each attack's AUC on the control within NULL_SES standard errors
    of 0.5 (the AUC's spread under the null for the control's numbers of members and non-members)."""
    frames = []
    for model in dict.fromkeys(r.row["model"] for r in attacks):
        check = Check("membership_control_at_chance",
                      "every attack at chance (AUC ~ 0.5) on a model that never saw the members")  # fmt: skip
        mine = [r for r in attacks if r.row["model"] == model and r.row["evaluated_on"] == "control" and scored(r)]
        if not control:
            check.skip("control: false")
        elif not mine:
            check.skip("no attack ran on the control")
        else:
            off = []
            for r in mine:
                tol = chance_tolerance(int(r.row["n_members"]), int(r.row["n_nonmembers"]))
                if abs(r.row["auc"] - 0.5) > tol:
                    off.append((r.row["attack"], r.row["auc"], tol))
            if off:
                check.trip([a for a, _, _ in off],
                           "; ".join(f"{a}: AUC {auc:.3f} (0.5 ± {tol:.3f})" for a, auc, tol in off))  # fmt: skip
            else:
                check.detail = f"{len(mine)} attacks within {NULL_SES:g} standard errors of 0.5"
        frames.append({**vars(check), "model": model})
    return pd.DataFrame(frames, columns=["name", "question", "status", "cells", "detail", "model"])


def roc_plot(attacks: list[Result], title: str) -> Figure:
    """A log-log ROC, one line per attack: solid on the target, dashed (same colour) on the control (rows without
    an ROC, SHAPr's and PDTP's, left out)."""
    import matplotlib.pyplot as plt

    attacks = [r for r in attacks if scored(r)]

    fig, ax = plt.subplots(figsize=(6, 5))
    names = list(dict.fromkeys(r.row["attack"] for r in attacks))
    colours = {n: plt.get_cmap("tab10")(i % 10) for i, n in enumerate(names)}
    floor = min(r.row["fpr_floor"] for r in attacks) / 2
    for r in attacks:
        fpr, tpr = roc(r.per_sample["score"].to_numpy(), r.per_sample["member"].to_numpy())
        control = r.row["evaluated_on"] == "control"
        label = f"{r.row['attack']} ({'control' if control else 'target'}, AUC {r.row['auc']:.2f})"
        ax.plot(np.maximum(fpr, floor), np.maximum(tpr, floor), color=colours[r.row["attack"]],
                linestyle="--" if control else "-", label=label)  # fmt: skip
    ax.plot([floor, 1], [floor, 1], color="grey", linewidth=0.8, linestyle=":", label="chance")
    ax.set(xscale="log", yscale="log", xlim=(floor, 1), ylim=(floor, 1), xlabel="false positive rate",
           ylabel="true positive rate", title=title)  # fmt: skip
    ax.legend(fontsize=7, loc="lower right")
    return fig


def _record(table: pd.DataFrame, models: pd.DataFrame, checks: pd.DataFrame, attacks: list[Result]) -> Aggregate:
    files: dict[str, str | bytes] = {
        "membership/table.csv": table.to_csv(index=False),
        "membership/models.csv": models.to_csv(index=False),
        "membership/checks.csv": checks.to_csv(index=False),
    }
    metrics: dict[str, float] = {"membership.checks_failed": float((checks["status"] == "failed").sum())}
    for model in dict.fromkeys(r.row["model"] for r in attacks):
        mine = [r for r in attacks if r.row["model"] == model]
        safe = model.replace("/", "-")
        if any(scored(r) for r in mine):
            files[f"membership/plots/roc-{safe}.png"] = plots.png(roc_plot(mine, f"membership inference ({model})"))
        for r in mine:
            for name in ("auc", *LEVELS) if scored(r) else LEAKAGE:
                metrics[f"membership.{name}.{safe}.{r.row['attack']}.{r.row['evaluated_on']}"] = r.row[name]
    tradeoff = privacy_tradeoff(table, models)
    if len(tradeoff):
        files["membership/tradeoff.csv"] = tradeoff.to_csv(index=False)
        files["membership/plots/privacy_tradeoff.png"] = plots.png(plots.privacy_tradeoff(tradeoff))
    return Aggregate(files, {"membership/table.json": table}, metrics, {})


def privacy_tradeoff(table: pd.DataFrame, models: pd.DataFrame) -> pd.DataFrame:
    """Per target (model, defence): the strongest attack by TPR at 1 % FPR (named) and the target's accuracy on
    the non-members (its utility on samples it never saw); `dp_epsilon` where the target was trained with DP-SGD."""
    ran = table[(table["status"] == "ok") & (table["evaluated_on"] == "target") & table["auc"].notna()]
    targets = models[models["role"] == "target"].set_index("model")
    rows = []
    for model, mine in ran.groupby("model", sort=False):
        if model not in targets.index:
            continue
        best = mine.loc[mine["tpr_at_fpr_0.01"].idxmax()]
        target = targets.loc[model]
        rows.append({"model": model, "defence": best["defence"], "attack": best["attack"],
                     "tpr_at_fpr_0.01": best["tpr_at_fpr_0.01"], "auc": best["auc"],
                     "nonmember_accuracy": target["nonmember_accuracy"],
                     "dp_epsilon": target["dp_epsilon"]})  # fmt: skip
    return pd.DataFrame(rows, columns=["model", "defence", "attack", "tpr_at_fpr_0.01", "auc", "nonmember_accuracy",
                                       "dp_epsilon"])  # fmt: skip
