"""The study's report: one self-contained HTML page (images as data URIs, CSS inline, no script, nothing fetched)
and the same in markdown, rendered with Jinja2 from a `ReportView`, which is read from the store alone
(`bridge.runner.aggregate.report_view`).

Sections, in this order: the verdict per (model, defence), failed checks first; where toolkits disagree; the
transferred (non-adaptive) rows; curves and trade-off; sample grids; every cell with the command that reproduces
it; every check; the scenario.
"""

from __future__ import annotations

import base64
import functools
import math
from dataclasses import dataclass
from typing import Any

import jinja2
import pandas as pd

from bridge.report.verdict import Verdict, best_defences, describe, disagreements, tolerance, verdicts

CELL_COLUMNS = [
    "model", "defence", "attack", "norm", "eps", "targeted", "variant", "evaluation", "source", "toolkit", "status",
    "clean_accuracy", "robust_accuracy", "robust_accuracy_worst_case", "attack_success_rate", "median_distance",
    "budget_violations", "run_id",
]  # fmt: skip
FIGURES = {  # a figure's section, by what its path holds
    "robust_accuracy_vs_eps": "Robust accuracy vs eps",
    "security_curve": "Security curves (minimum-norm attacks)",
    "tradeoff": "Clean vs worst-case robust accuracy (trade-off)",
    "plots/transfer/": "Transfer across models (source x target, per attack and eps)",
}


TITLES = {"membership": "Membership inference", "extraction": "Model extraction", "inversion": "Model inversion",
          "poisoning": "Poisoning and backdoors", "patch": "Adversarial patch"}  # fmt: skip


@dataclass(frozen=True)
class Section:
    """Another study kind of the scenario (membership inference, extraction, ...): its summary's markdown (a table
    with its legend), its figures and its checks, shown as the kind wrote them."""

    kind: str
    markdown: str
    figures: dict[str, bytes]  # the parent's PNGs of this kind, by artifact path
    checks: pd.DataFrame

    @property
    def title(self) -> str:
        return TITLES.get(self.kind, self.kind.capitalize())

    @property
    def html(self) -> str:
        """The markdown as HTML (raw HTML in it is escaped, not rendered)."""
        from markdown_it import MarkdownIt

        return MarkdownIt("commonmark", {"html": False}).enable("table").render(self.markdown)


@dataclass(frozen=True)
class ReportView:
    """Everything the report shows, as the store holds it."""

    scenario: str  # the scenario's name
    run_id: str  # the study's parent run
    experiment: str
    tracking_uri: str
    n_samples: int
    table: pd.DataFrame  # the comparison table: one row per cell, direct and transferred
    checks: pd.DataFrame  # every check of the evasion study, per model (what the verdict reads)
    worst: pd.DataFrame  # per (model, norm, eps): the per-sample worst case (consensus/worst_case_by_eps)
    figures: dict[str, bytes]  # the parent's PNGs by artifact path (plots/...)
    specs: dict[str, dict[str, Any]]  # child run id -> the cell's resolved attack spec
    notes: dict[str, str]  # child run id -> its toolkit translation's notes
    samples: dict[str, bytes]  # child run id -> its sample grid (PNG), for the cells `sample_cells` names
    scenario_file: str  # the scenario file's name as written ("" when the scenario was built in Python)
    scenario_text: str  # that file as written (else the resolved scenario, as YAML)
    commands: dict[str, str]  # child run id -> the command that reproduces its cell (bridge/runner/reproduce.py)
    recovered: list[str] | None  # the run's own --set values (None: not recoverable)
    sections: list[Section]  # the scenario's other study kinds, each shown as its summary says


def sample_cells(table: pd.DataFrame, checks: pd.DataFrame, worst: pd.DataFrame, n_samples: int) -> list[str]:
    """The child runs whose sample grids the report shows: the strongest direct cell per (model, threat model)."""
    found = verdicts(table, checks, worst, n_samples)
    return list(dict.fromkeys(c.run_id for v in found for t in v.threats for c in t.strongest[:1] if c.run_id))


# --- reproducing a cell ----------------------------------------------------------------------------------------


def number(value: Any, digits: int = 3) -> str:
    """A metric for the page: `0.812`; `–` when there is none."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def general(value: Any) -> str:
    """A budget for the page: `0.1`, `8`; `–` when there is none."""
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:g}"


def threat_name(norm: str, eps: float) -> str:
    return f"{norm} eps={eps:g}"


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _md_cell(value: Any) -> str:
    """Text safe in a markdown table cell (cell labels hold `|`)."""
    return str(value).replace("|", "\\|").replace("\n", " ")


@functools.cache
def _environment() -> jinja2.Environment:
    """The templates' environment, built once per process: it compiles each template once (about 0.1 s)."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("bridge.report", "templates"),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html.j2",), default_for_string=False),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters |= {"number": number, "g": general, "describe": describe, "data_uri": data_uri, "md": _md_cell}
    env.globals["threat_name"] = threat_name
    return env


def _figures(view: ReportView) -> dict[str, list[tuple[str, bytes]]]:
    """The parent's figures by section, in path order."""
    out: dict[str, list[tuple[str, bytes]]] = {title: [] for title in FIGURES.values()}
    for path in sorted(view.figures):
        title = next((t for key, t in FIGURES.items() if key in path), "Other figures")
        out.setdefault(title, []).append((path, view.figures[path]))
    return {title: figures for title, figures in out.items() if figures}


def _cells(view: ReportView) -> list[dict[str, Any]]:
    """Every row of the comparison table, with its reproducing command where its cell has a recorded spec."""
    return [
        {**{c: row.get(c) for c in CELL_COLUMNS}, "notes": view.notes.get(row["run_id"], ""),
         "reproduce": view.commands.get(row["run_id"], "")}
        for _, row in view.table.iterrows()
    ]  # fmt: skip


def _grids(view: ReportView, found: list[Verdict]) -> list[dict[str, Any]]:
    return [
        {"model": v.model, "threat": threat_name(t.norm, t.eps), "cell": describe(t.strongest[:1]),
         "run_id": t.strongest[0].run_id, "png": view.samples[t.strongest[0].run_id]}
        for v in found for t in v.threats if t.strongest and t.strongest[0].run_id in view.samples
    ]  # fmt: skip


def context(view: ReportView) -> dict[str, Any]:
    """What both templates render."""
    found = verdicts(view.table, view.checks, view.worst, view.n_samples)
    worst = {(v.model, t.norm, t.eps): t.worst_case for v in found for t in v.threats}
    transfer = view.table[view.table["evaluation"] == "transfer"]
    counts = view.table["status"].str.extract(r"^(ok|failed|unsupported)")[0].value_counts()
    return {
        "view": view,
        "counts": {k: int(counts.get(k, 0)) for k in ("ok", "failed", "unsupported")},
        "tolerance": tolerance(view.n_samples),
        "verdicts": found,
        "flagged": [v for v in found if v.flagged],
        "threats": sorted({(t.norm, t.eps) for v in found for t in v.threats}),
        "best": best_defences(found, view.n_samples),
        "disagreements": disagreements(view.table, view.n_samples),
        "transfer": [
            {**r, "direct_worst_case": worst.get((r["model"], r["norm"], r["eps"]), math.nan)}
            for r in transfer.to_dict("records")
        ],
        "figures": _figures(view),
        "grids": _grids(view, found),
        "cells": _cells(view),
        "recovered": view.recovered,
        "checks": view.checks.to_dict("records"),
        "evasion": bool(len(view.table)),
        "sections": view.sections,
    }


def render(view: ReportView) -> tuple[str, str]:
    """The report as (HTML page, markdown)."""
    env, values = _environment(), context(view)
    return env.get_template("report.html.j2").render(values), env.get_template("report.md.j2").render(values)
