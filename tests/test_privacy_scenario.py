"""`scenarios/privacy.yaml` end to end, as shipped (about a minute and a half on 2 cores): its parent run holds the
extraction curves, the ROC plot with LiRA and ART's attacks, the inversion grids and the privacy/utility trade-off
with the DP-SGD victim's epsilon."""

from __future__ import annotations

import io

import mlflow
import pandas as pd
import pytest

from bridge import run_scenario

pytestmark = pytest.mark.slow


def test_the_privacy_scenario_records_every_study(store: str, model_cache: str) -> None:
    table = run_scenario("scenarios/privacy.yaml", log=lambda _: None)
    assert set(table["study"]) == {"evasion", "extraction", "membership", "inversion"}
    assert (table["status"] == "ok").all()
    run_id = table.attrs["parent_run_id"]
    client = mlflow.MlflowClient(store)

    def listed(path: str) -> set[str]:
        return {a.path for a in client.list_artifacts(run_id, path)}

    for model in ("small_cnn", "small_cnn/dp_sgd-1"):
        assert f"extraction/plots/{model}" in listed("extraction/plots") | listed("extraction/plots/small_cnn")
        assert f"inversion/{model}.png" in listed("inversion") | listed("inversion/small_cnn")
        assert f"membership/plots/roc-{model.replace('/', '-')}.png" in listed("membership/plots")
    assert "membership/plots/privacy_tradeoff.png" in listed("membership/plots")
    membership = table[table["study"] == "membership"]
    assert {"lira-online-4", "gap", "blackbox-loss-rf", "shadow-rf-1"} <= set(membership["attack"])
    text = mlflow.artifacts.load_text(f"runs:/{run_id}/membership/tradeoff.csv")
    tradeoff = pd.read_csv(io.StringIO(text)).set_index("model")
    assert pd.isna(tradeoff.loc["small_cnn", "dp_epsilon"]) and tradeoff.loc["small_cnn/dp_sgd-1", "dp_epsilon"] > 0
    evasion = table[(table["study"] == "evasion") & (table["evaluation"] == "transfer")]
    assert set(evasion["source"]) == {"thief:copycat"} and len(evasion) == 4
    checks = pd.DataFrame(table.attrs["checks"]).set_index(["study", "name", "model"])["status"]
    assert checks.loc[("extraction", "extraction_not_below_true_labels", "small_cnn")] == "passed"
    assert checks.loc[("membership", "membership_control_at_chance", "small_cnn")] == "passed"
