"""A study re-aggregated from the store alone: its recorded plan, its finished child runs' results, and each
kind's aggregation, written to the parent again. What a run printed, this prints."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd

from bridge.core.errors import ScenarioError
from bridge.engine.store import Store
from bridge.runner.inputs import PLAN
from bridge.runner.study import every_cell_failed
from bridge.studies.registry import KINDS


def reaggregate(uri: str, run_id: str) -> tuple[pd.DataFrame, str]:
    """The comparison table of study `run_id` (its attrs as `run_scenario` sets them), recomputed from the store,
    and the study's experiment name. The parent's tables, plots and checks are rewritten."""
    from bridge.engine.tracking import client as open_client
    from bridge.engine.tracking import sqlite_path

    db = sqlite_path(uri)
    if db is not None and not db.is_file():  # opening it would create an empty store
        raise ScenarioError(f"{run_id}: there is no tracking store at {db}")
    client = open_client(uri)
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
    finished = store.finished(run_id)
    tables, checks = [], []
    for name, meta in recorded["meta"].items():
        keys = [t["key"] for t in recorded["tasks"] if t["study"] == name and t["key"] in finished]
        summary = KINDS[name].aggregate([store.load(finished[k]) for k in keys], meta)
        store.write(run_id, summary.record)
        tables.append(summary.table)
        checks.append(summary.checks)
    table = pd.concat(tables, ignore_index=True)
    n = json.loads(client.get_run(run_id).data.params.get("n_samples", "0"))
    table.attrs.update(
        tracking_uri=uri, experiment_id=run.info.experiment_id, parent_run_id=run_id, n_samples=n,
        failed=every_cell_failed(table),
        checks=pd.concat(checks, ignore_index=True).to_dict("records"),
    )  # fmt: skip
    return table, experiment
