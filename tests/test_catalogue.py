"""The catalogue scenario end to end: every canonical attack runs in at least one toolkit, nothing fails."""

from __future__ import annotations

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from bridge import run_scenario
from bridge.attacks.catalogue import CATALOGUE

pytestmark = pytest.mark.slow


def test_catalogue_scenario_runs_every_attack(store, model_cache) -> None:
    # 50 samples keep CI quick; the full scenario (100 samples) is timed by bench/scenario.py
    table = run_scenario("scenarios/catalogue.yaml", ["data.n_samples=50"], log=lambda _: None)
    assert not table["status"].str.startswith("failed").any(), table[table["status"].str.startswith("failed")]
    ran = set(table.loc[table["status"] == "ok", "attack"])
    assert set(CATALOGUE) <= ran, set(CATALOGUE) - ran
    assert {"native:FAB", "native:DDNAttack"} <= ran
    assert set(table.loc[table["status"] == "ok", "toolkit"]) == {"art", "foolbox", "torchattacks"}
    checks = pd.DataFrame(table.attrs["checks"])
    assert len(checks) == 12 and set(checks["status"]) <= {"passed", "failed", "skipped"}
    skipped = set(checks.loc[checks["status"] == "skipped", "name"])
    assert skipped == {"direct_beats_transfer", "detector_not_degenerate"}  # no defence, no detector here
    client = MlflowClient(store)
    parent = table.attrs["parent_run_id"]
    names = {a.path for a in client.list_artifacts(parent, "security")} | {
        a.path for a in client.list_artifacts(parent, "consensus")
    }
    assert {"security/curves.csv", "consensus/worst_case_by_eps.csv", "consensus/agreement.csv"} <= names
    decision = table[table["attack"].isin(["boundary", "hopskipjump"]) & (table["status"] == "ok")]
    answered = decision["queries_per_sample"] - decision["queries_blocked"] / table.attrs["n_samples"]
    assert (answered <= 600).all()  # the budget held: past it a toolkit may ask, but learns nothing
