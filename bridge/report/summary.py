"""The cross-toolkit summary: robust accuracy per (attack, norm, eps) row and one column per toolkit.

Shared by the CLI printout and the parent run's note and `comparison/summary.md`, so both say the same.
"""

from __future__ import annotations

import pandas as pd

ROW_KEYS = ["model", "attack", "norm", "targeted", "eps", "variant", "evaluation", "source"]


def _cell(row: pd.Series) -> str:
    if row["status"] != "ok":
        return row["status"].split(":")[0]
    text = f"{row['robust_accuracy']:.3f}"
    if pd.notna(row["eps"]) or pd.isna(row.get("median_distance")):
        return text
    return f"{text} / {row['norm']} {row['median_distance']:.3g}"


def summary(table: pd.DataFrame) -> pd.DataFrame:
    """Pivot of the comparison table, one column per toolkit: every cell keeps its own row (a variant or a transfer
    is a row of its own; two cells in one place would be an error, never a silent pick). Keys that take one value in
    the whole study are left out (`summary_markdown` states them)."""
    cells = table.assign(
        cell=table.apply(_cell, axis=1),
        eps=[("-" if pd.isna(e) else f"{e:g}") for e in table["eps"]],
        # where the examples were made: said for transfer rows only (a direct row's source is its model)
        source=table["source"].where(table["evaluation"] == "transfer", ""),
    )
    keys = [k for k in ROW_KEYS if k in ("attack", "norm", "eps") or cells[k].nunique() > 1]
    pivot = cells.pivot(index=keys, columns="toolkit", values="cell")
    in_table_order = pd.MultiIndex.from_frame(cells[keys].drop_duplicates())
    return pivot.reindex(in_table_order).fillna("").reset_index().rename_axis(columns=None)


LEGEND = (
    "Robust accuracy per toolkit (fraction of samples correct before and after the attack); for minimum-norm "
    "attacks run without eps, also the median distance they reached, in their norm. Every cell is shown: a "
    "variant names the spec fields in which cells of one attack differ; transfer rows are the examples made on another "
    "model (their source), judged by this one."
)


def clean_accuracies(table: pd.DataFrame) -> pd.Series:
    """Clean accuracy per model (each defended version is a model of its own), in table order."""
    return table.dropna(subset=["clean_accuracy"]).groupby("model", sort=False)["clean_accuracy"].first()


def summary_markdown(table: pd.DataFrame) -> str:
    clean = clean_accuracies(table)
    head = "Clean accuracy: " + ", ".join(f"{m} {a:.3f}" for m, a in clean.items()) + ". " if len(clean) else ""
    constant = [f"{k} {table[k].iloc[0]}" for k in ("model", "targeted", "evaluation") if table[k].nunique() == 1]
    every = f"Every cell: {', '.join(constant)}. " if constant else ""
    return f"{head}{every}{LEGEND}\n\n{summary(table).to_markdown(index=False, disable_numparse=True)}\n"
