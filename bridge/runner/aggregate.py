"""A study re-aggregated from the store alone: its recorded plan, its finished child runs' results, and each
kind's aggregation, written to the parent again with the study's report. What a run printed, this prints.

The report (`report/report.html` and `report/report.md` on the parent) is rendered by `write_report`, at the end
of a study and whenever its parent is re-aggregated, from what the store holds: the summaries, the children's
specs and sample grids, the scenario as written and as resolved.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from bridge.core.errors import ScenarioError
from bridge.engine.result import Aggregate, Result
from bridge.engine.store import ROLE, Store
from bridge.runner.inputs import PLAN
from bridge.runner.reproduce import commands
from bridge.scenario import reading
from bridge.studies.registry import KINDS

REPORT_HTML, REPORT_MD = "report/report.html", "report/report.md"
RESOLVED = "scenario/resolved.yaml"
WORST = "consensus/worst_case_by_eps.json"


def every_cell_failed(table: pd.DataFrame) -> bool:
    """A study failed when every cell that ran (not unsupported) failed; then its parent run ends FAILED."""
    ran = table[~table["status"].str.startswith("unsupported")]
    return bool(len(ran)) and bool(ran["status"].str.startswith("failed").all())


def _client(uri: str, what: str) -> Any:
    """A client on the store at `uri`; a sqlite file that does not exist is refused (opening it would create it)."""
    from bridge.engine.tracking import client, sqlite_path

    db = sqlite_path(uri)
    if db is not None and not db.is_file():
        raise ScenarioError(f"{what}: there is no tracking store at {db}")
    return client(uri)


def latest_study(uri: str) -> str:
    """The newest study (parent run) in the store at `uri`, in any experiment."""
    client = _client(uri, "latest")
    experiments = [e.experiment_id for e in client.search_experiments()]
    order = ["attributes.start_time DESC"]
    found = client.search_runs(experiments, f"tags.`{ROLE}` = 'study'", order_by=order, max_results=1)
    if not found:
        raise ScenarioError(f"latest: no study in {uri} yet (`advbridge run` records one)")
    return found[0].info.run_id


@dataclass
class Recorded:
    """A study as its store holds it, each kind's aggregation computed in memory (nothing written): what
    `advbridge aggregate` and `report` write back to the parent, and what `open_study` reads."""

    store: Store
    run: Any  # the parent run
    experiment: str
    plan: dict[str, Any]  # the recorded `study/plan.json`
    summaries: dict[str, Any]  # each kind's aggregation (table, checks, record), by kind
    results: list[Result]  # every recorded task's result (a failed one too), as recorded

    def table(self) -> pd.DataFrame:
        """The comparison table, its attrs as `run_scenario` sets them."""
        table = study_table(self.summaries)
        table.attrs.update(
            tracking_uri=self.store.uri, experiment_id=self.run.info.experiment_id, parent_run_id=self.run.info.run_id,
            n_samples=json.loads(self.run.data.params.get("n_samples", "0")), failed=every_cell_failed(table),
            checks=self.checks().to_dict("records"),
        )  # fmt: skip
        return table

    def checks(self) -> pd.DataFrame:
        return study_checks(self.summaries)


def study_table(summaries: dict[str, Any]) -> pd.DataFrame:
    """Every kind's table in one, each row marked with its kind (`study`): evasion cells, membership attacks, ..."""
    return pd.concat([s.table.assign(study=name) for name, s in summaries.items()], ignore_index=True)


def study_checks(summaries: dict[str, Any]) -> pd.DataFrame:
    """Every kind's checks in one, each marked with its kind (`study`)."""
    return pd.concat([s.checks.assign(study=name) for name, s in summaries.items()], ignore_index=True)


def read_study(uri: str, run_id: str) -> Recorded:
    """Study `run_id` read from the store at `uri` and aggregated by each of its kinds, writing nothing (a bad
    run id, or a run that is not a study, is one line)."""
    client = _client(uri, run_id)
    try:
        run = client.get_run(run_id)
    except Exception:
        raise ScenarioError(f"{run_id}: no such run in {uri}") from None
    experiment = client.get_experiment(run.info.experiment_id).name
    store = Store(uri, experiment)
    with tempfile.TemporaryDirectory() as tmp:
        try:
            recorded: dict[str, Any] = json.loads(Path(client.download_artifacts(run_id, PLAN, tmp)).read_text())
        except Exception:
            raise ScenarioError(f"{run_id}: not a study (it has no {PLAN})") from None
    finished = store.finished(run_id, ("FINISHED", "FAILED"))
    summaries, results = {}, []
    for name, meta in recorded["meta"].items():
        keys = [t["key"] for t in recorded["tasks"] if t["study"] == name and t["key"] in finished]
        mine = [store.load(finished[k]) for k in keys]
        summaries[name] = KINDS[name].aggregate(mine, meta)
        results += mine
    return Recorded(store, run, experiment, recorded, summaries, results)


def _rebuild(uri: str, run_id: str) -> tuple[pd.DataFrame, str, tuple[str, str]]:
    """Every kind re-aggregated from the store and written to the parent with the report: (the comparison table,
    the experiment's name, the report as (html, markdown))."""
    study = read_study(uri, run_id)
    for summary in study.summaries.values():
        study.store.write(run_id, summary.record)
    report = write_report(study.store, run_id, study.summaries, study.results)
    return study.table(), study.experiment, report


def reaggregate(uri: str, run_id: str) -> tuple[pd.DataFrame, str]:
    """The comparison table of study `run_id` (its attrs as `run_scenario` sets them), recomputed from the store,
    and the study's experiment name. The parent's tables, plots, checks and report are rewritten."""
    table, experiment, _ = _rebuild(uri, run_id)
    return table, experiment


def report_of(uri: str, run_id: str) -> tuple[str, str]:
    """The report of study `run_id` as (html, markdown), rebuilt from the store (see `reaggregate`)."""
    return _rebuild(uri, run_id)[2]


def _artifact(client: Any, run_id: str, path: str) -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        return Path(client.download_artifacts(run_id, path, tmp)).read_bytes()


def report_view(store: Store, run_id: str, summaries: dict[str, Any], results: list[Result]) -> Any:
    """The `ReportView` of study `run_id`: its kinds' summaries and its tasks' results (as recorded), with what
    the parent and the children hold besides (the scenario, the sample grids the report shows). The verdict and
    the cells are the evasion study's; every other kind is a section of its own (its markdown and figures)."""
    from bridge.report.html import ReportView, Section, sample_cells
    from bridge.studies.evasion.aggregate import TABLE_COLUMNS

    client = store.client
    run = client.get_run(run_id)
    evasion = summaries.get("evasion")
    table = evasion.table if evasion is not None else pd.DataFrame(columns=TABLE_COLUMNS)
    checks = evasion.checks if evasion is not None else pd.DataFrame(columns=["model", "name", "status"])
    worst = evasion.record.tables.get(WORST, pd.DataFrame()) if evasion is not None else pd.DataFrame()
    sections = [
        Section(name, s.markdown, {p: c for p, c in s.record.files.items() if p.endswith(".png")}, s.checks)
        for name, s in summaries.items() if name != "evasion"
    ]  # fmt: skip
    n_samples = int(json.loads(run.data.params.get("n_samples", "0")))
    cells = [r for r in results if r.run_id and "spec" in r.params]
    written = [a.path for a in client.list_artifacts(run_id, "scenario") if a.path != RESOLVED]
    resolved = reading.recorded(_artifact(client, run_id, RESOLVED))["scenario"]
    scenario_file = Path(written[0]).name if written else ""
    text = _artifact(client, run_id, written[0]).decode() if written else yaml.safe_dump(resolved, sort_keys=False)
    specs = {r.run_id: r.params["spec"] for r in cells}
    found, recovered = commands(table, specs, scenario_file, text, resolved)
    return ReportView(
        scenario=run.data.tags.get("scenario", run.info.run_name),
        run_id=run_id,
        experiment=client.get_experiment(run.info.experiment_id).name,
        tracking_uri=store.uri,
        n_samples=n_samples,
        table=table,
        checks=checks,
        worst=worst,
        figures={p: c for p, c in (evasion.record.files if evasion is not None else {}).items() if p.endswith(".png")},
        sections=sections,
        specs=specs,
        notes={r.run_id: r.params.get("translation", {}).get("notes", "") for r in cells},
        samples={i: _artifact(client, i, "samples.png") for i in sample_cells(table, checks, worst, n_samples)},
        scenario_file=scenario_file,
        scenario_text=text,
        commands=found,
        recovered=recovered,
    )


def write_report(store: Store, run_id: str, summaries: dict[str, Any], results: list[Result]) -> tuple[str, str]:
    """Render the report of study `run_id` and log it on its parent (report/report.html, report/report.md);
    returns (html, markdown). `summaries`: each kind's aggregation; `results`: every task's, as recorded."""
    from bridge.report.html import render

    html, markdown = render(report_view(store, run_id, summaries, results))
    # the page in the UI's artifact view; its markdown (the verdict first) as the run's description
    store.write(run_id, Aggregate({REPORT_HTML: html, REPORT_MD: markdown}, tags={"mlflow.note.content": markdown}))
    return html, markdown
