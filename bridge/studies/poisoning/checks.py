"""The poisoning study's sanity checks, on its table alone: a backdoor that was never learned, and a poisoned model
that gives itself away by its clean accuracy."""

from __future__ import annotations

import pandas as pd

from bridge.studies.evasion.checks import Check, checks_per_model


def _trained(rows: pd.DataFrame) -> pd.DataFrame:
    return rows[(rows["task"] == "train") & (rows["status"] == "ok")]


def backdoor_learned(rows: pd.DataFrame, tolerance: float) -> Check:
    """At its largest fraction, each (attack, target)'s mean ASR over its retrainings must exceed the clean model's
    rate on the same triggered inputs (the base rate) by more than `tolerance`: else the trigger was never learned
    (a trigger misplaced, labels not flipped, too few poisons), and the curve measures nothing."""
    check = Check("backdoor_learned", f"each attack's ASR at its largest fraction exceeds the clean model's base rate "
                  f"by more than {tolerance:g}")  # fmt: skip
    ran = _trained(rows)
    if ran.empty:
        return check.skip("no poisoned model was trained")
    tripped, seen = [], []
    for (attack, target), mine in ran.groupby(["attack", "target"], sort=False):
        top = mine[mine["fraction"] == mine["fraction"].max()]
        asr, base = float(top["asr"].mean()), float(top["base_rate"].iloc[0])
        cell = f"{attack} t={target} f={top['fraction'].iloc[0]:g} (ASR {asr:.3f}, base rate {base:.3f})"
        (tripped if asr - base <= tolerance else seen).append(cell)
    if tripped:
        return check.trip(tripped, "the trigger was not learned: the ASR stays near the clean model's base rate")
    check.detail = "; ".join(seen)
    return check


def poisoning_stealthy(rows: pd.DataFrame, max_drop: float) -> Check:
    """Every poisoned model keeps its clean accuracy within `max_drop` of the clean model's: a larger drop is a
    poisoning anyone testing the model would notice (not stealthy)."""
    check = Check("poisoning_stealthy", f"every poisoned model's clean accuracy is within {max_drop:g} of the clean "
                  "model's")  # fmt: skip
    ran = _trained(rows)
    if ran.empty:
        return check.skip("no poisoned model was trained")
    tripped = [f"{r.attack} t={r.target} f={r.fraction:g} r={r.retraining} (drop {r.accuracy_drop:.3f})"
               for r in ran.itertuples() if r.accuracy_drop > max_drop]  # fmt: skip
    if tripped:
        return check.trip(tripped, f"clean accuracy dropped by more than {max_drop:g}")
    check.detail = f"largest drop {ran['accuracy_drop'].max():.3f} over {len(ran)} poisoned models"
    return check


def run_checks(table: pd.DataFrame, tolerance: float, max_drop: float) -> pd.DataFrame:
    """Every check per model: name, question, status, cells, detail, model."""
    return checks_per_model(table, "model", lambda rows: [backdoor_learned(rows, tolerance),
                                                          poisoning_stealthy(rows, max_drop)])  # fmt: skip
