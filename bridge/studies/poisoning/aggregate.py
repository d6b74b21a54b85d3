"""The poisoning study's tables, curves and checks, computed from persisted results alone (a pure function of the
results and the plan's meta, so a re-aggregated study shows exactly what the first run showed)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from bridge.engine.result import Aggregate, Result
from bridge.studies.poisoning.checks import run_checks
from bridge.studies.poisoning.plots import curve

KIND = "poisoning"
TABLE_COLUMNS = [
    "model", "defence", "dataset", "attack", "toolkit", "task", "target", "fraction", "retraining", "status",
    "n_poison", "fraction_poisoned", "label_flipped", "max_perturbation", "clean_accuracy", "clean_accuracy_reference",
    "accuracy_drop", "asr", "base_rate", "n_triggered", "tpr", "fpr", "n_flagged", "asr_before",
    "clean_accuracy_before", "detection_rate", "strip_fpr", "anomaly_index", "flagged_classes", "wall_time_s", "run_id",
]  # fmt: skip
CURVE_COLUMNS = ["model", "attack", "target", "fraction", "n_retrainings", "asr_mean", "asr_std", "base_rate",
                 "clean_accuracy_mean", "clean_accuracy_std", "clean_accuracy_reference"]  # fmt: skip
DETECTION_SHOWN = ["model", "attack", "target", "fraction", "defence", "status", "tpr", "fpr", "n_flagged", "n_poison",
                   "asr_before", "asr", "clean_accuracy", "detection_rate", "strip_fpr", "anomaly_index",
                   "flagged_classes"]  # fmt: skip

LEGEND = (
    "The victim (the scenario's model) is retrained by the bridge on the training split with a share `fraction` of "
    "it poisoned (fraction 0: the clean model). backdoor-*: BadNets, samples of other classes get the trigger (placed "
    "by the bridge on every channel) and the target's label, through ART's PoisoningAttackBackdoor; clean_label-*: "
    "ART's clean-label backdoor, target-class samples pushed off their class by PGD on the clean model then "
    "triggered, labels kept; gradient_matching: ART's Witches' Brew, target-class samples perturbed so that chosen "
    "test images of other classes are classified as the target. `asr_mean`: among the triggered evaluation inputs "
    "whose true class is not the target (for gradient matching, the chosen test images), the share the poisoned "
    "model classifies as the target, averaged over `n_retrainings` independent retrainings (training seeds; "
    "`asr_std` their spread, every retraining is a row of table.csv); `base_rate`: the clean model's rate on the "
    "same inputs; `clean_accuracy_*`: accuracy on the clean evaluation samples."
)
DETECTION_LEGEND = (
    "Defences, each on the poisoned set of its row and the victim trained on it (retraining 0). activation "
    "(ART's ActivationDefence) and spectral (ART's SpectralSignatureDefense) flag training samples: `tpr` is the "
    "share of the known poisons flagged, `fpr` the share of clean samples flagged (computed by the bridge from the "
    "flagged indices); the victim is then retrained without the flagged samples: `asr_before` is the poisoned "
    "model's ASR, `asr` and `clean_accuracy` the retrained model's. strip (STRIP at run time, computed by "
    "the bridge: ART's takes its entropy across the blends instead of across the classes and flags at chance): "
    "`detection_rate` is the share of triggered inputs of other classes STRIP flags, `strip_fpr` the share of clean "
    "evaluation inputs; the threshold is set on clean training samples at the false acceptance rate asked. "
    "neural_cleanse (ART's, for Keras models only): per class, the smallest trigger (mask and pattern) sending clean "
    "training samples to it, reverse-engineered; `anomaly_index` is the target's (the distance of its mask's L1 norm "
    "from the median of the classes', in consistent median absolute deviations, computed by the bridge), "
    "`flagged_classes` those with an index above 2 and a norm below the median; `asr` and `clean_accuracy` are the "
    "model's after ART's pruning of the flagged class's neurons (30 % of the last hidden layer)."
)


@dataclass
class Summary:
    table: pd.DataFrame  # one row per task (each retraining its own row), and the rows of what cannot run
    checks: pd.DataFrame
    record: Aggregate
    curves: pd.DataFrame  # per (model, attack, target, fraction): mean and spread over the retrainings
    detection: pd.DataFrame  # the defences' rows

    @property
    def markdown(self) -> str:
        """The section the report embeds: the curves and the defences, each with its legend."""
        parts = [LEGEND, self.curves.to_markdown(index=False, floatfmt=".3f")]
        if len(self.detection):
            parts += [DETECTION_LEGEND, self.detection[DETECTION_SHOWN].to_markdown(index=False, floatfmt=".3f")]
        stopped = self.table[(self.table["status"] != "ok") & (self.table["defence"] == "none")]
        if len(stopped):
            parts.append("Did not run:\n\n" + stopped[["model", "attack", "task", "target", "fraction",
                                                     "status"]].to_markdown(index=False))  # fmt: skip
        return "\n\n".join(parts) + "\n"


def curves(table: pd.DataFrame) -> pd.DataFrame:
    """Per (model, attack, target, fraction): the ASR and clean accuracy over the retrainings (mean, spread, count),
    with the clean model as fraction 0."""
    ok = table[table["status"] == "ok"]
    rows = []
    for (model, attack, target), mine in ok.groupby(["model", "attack", "target"], sort=False):
        ref = mine[mine["task"] == "reference"]
        if len(ref):
            r = ref.iloc[0]
            rows.append({"model": model, "attack": attack, "target": target, "fraction": 0.0, "n_retrainings": 1,
                         "asr_mean": r["asr"], "base_rate": r["asr"], "clean_accuracy_mean": r["clean_accuracy"],
                         "clean_accuracy_reference": r["clean_accuracy"]})  # fmt: skip
        for fraction, runs in mine[mine["task"] == "train"].groupby("fraction"):
            rows.append({"model": model, "attack": attack, "target": target, "fraction": fraction,
                         "n_retrainings": len(runs), "asr_mean": runs["asr"].mean(), "asr_std": runs["asr"].std(),
                         "base_rate": runs["base_rate"].iloc[0], "clean_accuracy_mean": runs["clean_accuracy"].mean(),
                         "clean_accuracy_std": runs["clean_accuracy"].std(),
                         "clean_accuracy_reference": runs["clean_accuracy_reference"].iloc[0]})  # fmt: skip
    return pd.DataFrame(rows, columns=CURVE_COLUMNS)


def aggregate(results: list[Result], meta: dict[str, Any]) -> Summary:
    by_key = {r.key: r for r in results}
    rows = [dict(e["row"]) if "row" in e else {**by_key[e["task"]].row, "run_id": by_key[e["task"]].run_id or None}
            for e in meta["rows"] if "row" in e or e["task"] in by_key]  # fmt: skip
    table = pd.DataFrame(rows, columns=TABLE_COLUMNS)
    detection = table[table["defence"] != "none"].reset_index(drop=True)
    n_poison = table[table["task"] == "craft"].set_index(["model", "attack", "target", "fraction"])["n_poison"]
    keys = list(zip(detection["model"], detection["attack"], detection["target"], detection["fraction"], strict=True))
    detection["n_poison"] = [n_poison.get(k) for k in keys]
    curve_table = curves(table)
    checks = run_checks(table, meta["asr_tolerance"], meta["max_accuracy_drop"])
    files: dict[str, str | bytes] = {f"{KIND}/table.csv": table.to_csv(index=False),
                                     f"{KIND}/curves.csv": curve_table.to_csv(index=False),
                                     f"{KIND}/detection.csv": detection.to_csv(index=False),
                                     f"{KIND}/checks.csv": checks.to_csv(index=False)}  # fmt: skip
    metrics: dict[str, float] = {f"{KIND}.checks_failed": float((checks["status"] == "failed").sum())}
    if len(curve_table):
        title = f"backdoor poisoning ({meta['scenario']})"
        files[f"{KIND}/plots/asr_vs_fraction.png"] = curve(curve_table, "asr", title)
        files[f"{KIND}/plots/clean_accuracy_vs_fraction.png"] = curve(curve_table, "clean_accuracy", title)
    for r in curve_table[curve_table["fraction"] > 0].itertuples():
        where = f"{r.model.replace('/', '-')}.{r.attack}.target{r.target}.fraction{r.fraction:g}"
        metrics[f"{KIND}.asr_mean.{where}"] = float(r.asr_mean)
        metrics[f"{KIND}.clean_accuracy_mean.{where}"] = float(r.clean_accuracy_mean)
    for r in detection[detection["status"] == "ok"].itertuples():
        where = f"{r.model.replace('/', '-')}.{r.attack}.target{r.target}.fraction{r.fraction:g}.{r.defence}"
        for name in ("tpr", "fpr", "asr", "detection_rate", "strip_fpr", "anomaly_index"):
            if pd.notna(getattr(r, name)):
                metrics[f"{KIND}.{name}.{where}"] = float(getattr(r, name))
    record = Aggregate(files, {f"{KIND}/table.json": table, f"{KIND}/checks.json": checks}, metrics)
    summary = Summary(table, checks, record, curve_table, detection)
    record.files[f"{KIND}/table.md"] = summary.markdown
    return summary
