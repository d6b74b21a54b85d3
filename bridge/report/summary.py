"""The cross-toolkit summary: robust accuracy per (attack, norm, eps) row and one column per toolkit.

Shared by the CLI printout and the parent run's note and `comparison/summary.md`, so both say the same.
"""

from __future__ import annotations

import pandas as pd

ROW_KEYS = ["model", "attack", "norm", "targeted", "eps"]


def _cell(row: pd.Series) -> str:
    if row["status"] != "ok":
        return row["status"].split(":")[0]
    text = f"{row['robust_accuracy']:.3f}"
    if pd.notna(row["eps"]) or pd.isna(row.get("median_distance")):
        return text
    return f"{text} / {row['norm']} {row['median_distance']:.3g}"


def summary(table: pd.DataFrame) -> pd.DataFrame:
    """Pivot of the comparison table; keys that take one value in the whole study are left out."""
    cells = table.assign(
        cell=table.apply(_cell, axis=1),
        eps=[("-" if pd.isna(e) else f"{e:g}") for e in table["eps"]],
    )
    keys = [k for k in ROW_KEYS if k in ("attack", "norm", "eps") or cells[k].nunique() > 1]
    pivot = cells.pivot_table(index=keys, columns="toolkit", values="cell", aggfunc="first", sort=False)
    return pivot.fillna("").reset_index().rename_axis(columns=None)


LEGEND = (
    "Robust accuracy per toolkit (fraction of samples correct before and after the attack); for minimum-norm "
    "attacks run without eps, also the median distance they reached, in their norm."
)


def summary_markdown(table: pd.DataFrame) -> str:
    clean = table["clean_accuracy"].dropna()
    head = f"Clean accuracy {clean.iloc[0]:.3f}. " if len(clean) else ""
    return f"{head}{LEGEND}\n\n{summary(table).to_markdown(index=False)}\n"
