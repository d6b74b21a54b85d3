"""The verdict per (model, defence), from the comparison table, the checks and the per-sample worst cases alone.

What a reviewer reads first: clean accuracy, the worst case per threat model (norm, eps), the strongest cells (all
within one sample of the lowest robust accuracy: a tie, called a tie) and every failed check beside the number it
casts doubt on. A model with a failed check is FLAGGED and never ranked as the best defence; and a defence is ranked
by the lowest robust accuracy found, transferred example sets included (a direct worst case that gradient masking
inflates would otherwise rank it first).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import pandas as pd

WORST_COLUMNS = ["model", "norm", "eps", "cells", "robust_accuracy_worst_case", "best_single_cell",
                 "best_single_cell_robust_accuracy"]  # fmt: skip


@dataclass(frozen=True)
class Cell:
    """A cell a verdict names: its attack (with its targeting), toolkit, robust accuracy and child run."""

    attack: str
    toolkit: str
    robust_accuracy: float
    run_id: str | None


@dataclass(frozen=True)
class FailedCheck:
    name: str
    question: str
    cells: str
    detail: str


@dataclass(frozen=True)
class Threat:
    """One threat model (norm, eps) of one (model, defence)."""

    norm: str
    eps: float
    worst_case: float  # per sample, over every cell the worst-case table counts at this eps (NaN: none ran)
    cells: int  # how many cells that is
    strongest: tuple[Cell, ...]  # the direct cell with the lowest robust accuracy and every one within a sample of it
    transfer: tuple[Cell, ...]  # the same for the transferred example sets judged by this model
    doubts: tuple[str, ...]  # the failed checks naming this threat model's cells, or the model as a whole

    @property
    def bound(self) -> float:
        """The lowest robust accuracy found here (direct worst case or a transferred set): what ranks a defence."""
        values = [v for v in (self.worst_case, *(c.robust_accuracy for c in self.transfer)) if not math.isnan(v)]
        return min(values) if values else math.nan


@dataclass(frozen=True)
class Verdict:
    model: str  # the victim's name: `<base>` or `<base>/<defence>`
    base: str
    defence: str
    clean_accuracy: float
    threats: tuple[Threat, ...]
    failed: tuple[FailedCheck, ...]

    @property
    def flagged(self) -> bool:
        return bool(self.failed)


@dataclass(frozen=True)
class Best:
    """Per base model and threat model: the unflagged defence(s) with the highest bound (ties within a sample), and
    the flagged ones, which are not ranked."""

    base: str
    norm: str
    eps: float
    defences: tuple[str, ...]
    robust_accuracy: float
    flagged: tuple[str, ...]


@dataclass(frozen=True)
class Disagreement:
    """One spec (model, attack, norm, eps, targeting, variant) whose toolkits' robust accuracies spread beyond the
    threshold."""

    model: str
    attack: str
    norm: str
    eps: float
    spread: float
    cells: tuple[Cell, ...]


def tolerance(n_samples: int) -> float:
    """One sample's worth of accuracy: results this close are a tie (random starts move a result that much)."""
    return 1.0 / max(n_samples, 1) + 1e-9


def _attack(row: pd.Series) -> str:
    """The attack as a reader tells cells apart: `pgd`, `pgd targeted=random`, `pgd [random_start=true]` (a variant:
    the spec fields in which cells of one attack differ)."""
    variant = row.get("variant")
    targeted = "" if row["targeted"] == "none" else f" targeted={row['targeted']}"
    return row["attack"] + targeted + (f" [{variant}]" if isinstance(variant, str) and variant else "")


def _cells(rows: pd.DataFrame) -> list[Cell]:
    """Cells as a verdict names them; a transferred set says which model its examples were made on."""
    return [
        Cell(_attack(r) + (f" from {r['source']}" if r["evaluation"] == "transfer" else ""), r["toolkit"],
             float(r["robust_accuracy"]), r["run_id"] if pd.notna(r["run_id"]) else None)
        for _, r in rows.iterrows()
    ]  # fmt: skip


def _thresholded(at: pd.DataFrame) -> list[Cell]:
    """The worst-case table's strongest single cell where it is a minimum-norm cell run without eps (thresholded
    at this eps; its label has no eps): a candidate the comparison table has no row for at this eps."""
    if not len(at) or " eps=" in at["best_single_cell"].iloc[0]:
        return []
    name, _, toolkit = at["best_single_cell"].iloc[0].rpartition(" | ")
    return [Cell(f"{name} (minimum-norm, at this eps)", toolkit, float(at["best_single_cell_robust_accuracy"].iloc[0]),
                 None)]  # fmt: skip


def lowest(cells: list[Cell], tol: float) -> tuple[Cell, ...]:
    """The cell with the lowest robust accuracy and every cell within `tol` of it, strongest first."""
    if not cells:
        return ()
    floor = min(c.robust_accuracy for c in cells)
    return tuple(sorted((c for c in cells if c.robust_accuracy <= floor + tol), key=lambda c: c.robust_accuracy))


def describe(cells: tuple[Cell, ...]) -> str:
    """`pgd (art)`, `pgd (tie: art, foolbox, torchattacks)`, or `tie: fgsm (art); pgd (art, torchattacks)`."""
    by_attack: dict[str, list[str]] = {}
    for c in cells:
        by_attack.setdefault(c.attack, []).append(c.toolkit)
    tie = "tie: " if len(cells) > 1 else ""
    if len(by_attack) == 1:
        ((attack, toolkits),) = by_attack.items()
        return f"{attack} ({tie}{', '.join(toolkits)})"
    return tie + "; ".join(f"{a} ({', '.join(t)})" for a, t in by_attack.items())


def _names(cells: str, norm: str, eps: float) -> bool:
    """Whether a check's `cells` names a cell of this threat model (labels read `pgd-linf eps=0.1 | art`)."""
    return re.search(rf"-{re.escape(norm)} eps={re.escape(f'{eps:g}')}(?=\s|$)", cells) is not None


def _doubts(failed: list[FailedCheck], keys: list[tuple[str, float]]) -> dict[tuple[str, float], tuple[str, ...]]:
    """Each threat model's doubting checks: those naming its cells, and those naming none (about the model)."""
    named = {k: [f.name for f in failed if _names(f.cells, *k)] for k in keys}
    whole = [f.name for f in failed if not any(_names(f.cells, *k) for k in keys)]
    return {k: tuple(named[k] + whole) for k in keys}


def _base(model: str, defence: str) -> str:
    """The model's name without its defence (a defended victim is named `<model>/<defence>`)."""
    return model if defence == "none" else model.removesuffix(f"/{defence}")


def _failed(checks: pd.DataFrame, model: str) -> list[FailedCheck]:
    if checks.empty:
        return []
    rows = checks[(checks["model"] == model) & (checks["status"] == "failed")]
    return [FailedCheck(r["name"], r["question"], r["cells"], r["detail"]) for _, r in rows.iterrows()]


def verdicts(table: pd.DataFrame, checks: pd.DataFrame, worst: pd.DataFrame, n_samples: int) -> list[Verdict]:
    """One verdict per model of `table` (the comparison table), in its order. `worst`: the per-sample worst case
    per (model, norm, eps) (`consensus/worst_case_by_eps`); `checks`: every check per model.

    The strongest cells at an eps are the direct cells run at it, and the worst-case table's strongest single cell
    where that is a minimum-norm cell run without eps (only that one of those is known here)."""
    tol = tolerance(n_samples)
    worst = worst.reindex(columns=WORST_COLUMNS)
    out = []
    for model in table["model"].drop_duplicates():
        rows = table[table["model"] == model]
        ran = rows[(rows["status"] == "ok") & rows["eps"].notna()]
        direct, moved = ran[ran["evaluation"] == "direct"], ran[ran["evaluation"] == "transfer"]
        mine = worst[worst["model"] == model]
        keys = sorted(
            {(r.norm, float(r.eps)) for r in pd.concat([ran[["norm", "eps"]], mine[["norm", "eps"]]]).itertuples()}
        )
        failed = _failed(checks, model)
        doubts = _doubts(failed, keys)
        threats = []
        for norm, eps in keys:
            at = mine[(mine["norm"] == norm) & (mine["eps"] == eps)]
            threats.append(
                Threat(
                    norm, eps,
                    float(at["robust_accuracy_worst_case"].iloc[0]) if len(at) else math.nan,
                    int(at["cells"].iloc[0]) if len(at) else 0,
                    lowest(_cells(direct[(direct["norm"] == norm) & (direct["eps"] == eps)]) + _thresholded(at), tol),
                    lowest(_cells(moved[(moved["norm"] == norm) & (moved["eps"] == eps)]), tol),
                    doubts[(norm, eps)],
                )
            )  # fmt: skip
        clean = rows["clean_accuracy"].dropna()
        defence = rows["defence"].iloc[0]
        out.append(Verdict(model, _base(model, defence), defence, float(clean.iloc[0]) if len(clean) else math.nan,
                           tuple(threats), tuple(failed)))  # fmt: skip
    return out


def best_defences(found: list[Verdict], n_samples: int) -> list[Best]:
    """Per base model with several defences and per threat model, the best unflagged defence(s); flagged ones are
    listed apart, never ranked."""
    tol = tolerance(n_samples)
    out = []
    bases = dict.fromkeys(v.base for v in found)
    for base in bases:
        mine = [v for v in found if v.base == base]
        if len(mine) < 2:
            continue
        for norm, eps in sorted({(t.norm, t.eps) for v in mine for t in v.threats}):
            bounds = {v.defence: t.bound for v in mine for t in v.threats if (t.norm, t.eps) == (norm, eps)}
            flagged = tuple(v.defence for v in mine if v.flagged and v.defence in bounds)
            ranked = {d: b for d, b in bounds.items() if d not in flagged and not math.isnan(b)}
            top = max(ranked.values(), default=math.nan)
            best = tuple(d for d, b in ranked.items() if b >= top - tol)
            out.append(Best(base, norm, eps, best, top, flagged))
    return out


def disagreements(table: pd.DataFrame, n_samples: int, threshold: float = 0.05) -> list[Disagreement]:
    """The direct cells of one spec (model, attack, norm, eps, targeting, variant) whose toolkits' robust accuracies
    spread by more than `threshold` and more than one sample. (Minimum-norm cells without eps are compared by their
    distances, in the table of every cell and the security curves.)"""
    limit = max(threshold, tolerance(n_samples))
    ran = table[(table["status"] == "ok") & (table["evaluation"] == "direct") & table["eps"].notna()]
    out = []
    keys = ["model", "norm", "eps", "attack", "targeted", *(["variant"] if "variant" in table else [])]
    for (model, norm, eps, *_), rows in ran.groupby(keys, sort=False):
        accuracy = rows["robust_accuracy"]
        spread = float(accuracy.max() - accuracy.min())
        if len(rows) > 1 and spread > limit:
            cells = tuple(sorted(_cells(rows), key=lambda c: c.robust_accuracy))
            out.append(Disagreement(model, cells[0].attack, norm, float(eps), spread, cells))
    return out
