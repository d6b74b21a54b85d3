"""What `advbridge run` and `advbridge aggregate` print: the cross-toolkit summary, every cell that did not run and
why, the sanity checks, and where the study is recorded."""

from __future__ import annotations

from typing import Any

UI_HOST, UI_PORT = "127.0.0.1", 5000


def print_summary(table: Any, n_samples: int) -> None:
    """The cross-toolkit comparison of the evasion grid, every cell that did not run and why, each other study
    kind's table (its rows, the columns it fills), then the sanity checks."""
    from rich.console import Console
    from rich.table import Table

    from bridge.report.summary import LEGEND, clean_accuracies, summary

    console = Console(width=max(Console().width, 110))
    kinds = table["study"] if "study" in table else None
    evasion = table if kinds is None else table[kinds == "evasion"]
    if len(evasion):
        pivot = summary(evasion)
        out = Table(caption=LEGEND, caption_justify="left")
        for name in pivot.columns:
            out.add_column(str(name), no_wrap=True)
        for values in pivot.itertuples(index=False):
            out.add_row(*map(str, values))
        console.print(out)
        clean = clean_accuracies(evasion)
        if len(clean):
            many = len(clean) > 1
            per_model = ", ".join(f"{m} {a:.3f}" for m, a in clean.items()) if many else f"{clean.iloc[0]:.3f}"
            console.print(f"clean accuracy {per_model} on {n_samples} samples")
        lines = dict.fromkeys(
            f"  {r.attack}-{r.norm} | {r.toolkit}: {r.status}" for r in evasion.itertuples() if r.status != "ok"
        )
        for line in lines:  # each reason once: several eps of one attack share it
            console.print(line, markup=False, soft_wrap=True)
    for kind in [] if kinds is None else [k for k in kinds.unique() if k != "evasion"]:
        rows = table[kinds == kind].dropna(axis=1, how="all").drop(columns=["study", "run_id"], errors="ignore")
        console.print(f"\n{kind}:", markup=False)
        console.print(rows.to_string(index=False, float_format=lambda v: f"{v:.3f}"), markup=False, soft_wrap=True)
    if table.attrs.get("checks"):
        import pandas as pd

        from bridge.studies.evasion.checks import summary_line

        console.print(summary_line(pd.DataFrame(table.attrs["checks"])), markup=False, soft_wrap=True)


def print_record(table: Any, experiment: str) -> None:
    """Where the study is: store, experiment, parent run, and the UI's address."""
    from bridge.engine.tracking import ui_url

    eid, uri, parent = table.attrs["experiment_id"], table.attrs["tracking_uri"], table.attrs["parent_run_id"]
    print(f"\nRecorded in MLflow ({uri}): experiment '{experiment}' (id {eid}), parent run {parent}.")
    print(f"Open it in the MLflow UI: run `advbridge ui`, then visit {ui_url(UI_HOST, UI_PORT, eid)}")
