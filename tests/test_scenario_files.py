"""The Keras and defences scenarios end to end, with fewer samples to keep CI short (full size: bench/scenario.py)."""

from __future__ import annotations

import io

import mlflow
import pandas as pd
import pytest

from bridge import run_scenario

pytestmark = pytest.mark.slow


def test_keras_scenario_runs_both_frameworks(store, model_cache) -> None:
    fewer = ["data.n_samples=20", "models.1.training.epochs=8", "models.2.training.epochs=2", "attacks.3.steps=5",
             "attacks.4.max_queries=50"]  # fmt: skip
    table = run_scenario("scenarios/keras.yaml", fewer, log=lambda _: None)
    assert not table["status"].str.startswith("failed").any()
    keras = table[table["model"].str.endswith("-keras")]
    assert (keras.loc[keras["toolkit"] == "torchattacks", "status"].str.contains("PyTorch modules only")).all()
    ran = keras[keras["status"] == "ok"]
    assert set(ran["toolkit"]) == {"art", "foolbox"} and set(ran["model"]) == {"small_cnn-keras", "resnet18-keras"}
    pgd = ran[(ran["attack"] == "pgd") & (ran["norm"] == "linf")].pivot_table(
        index=["model", "eps"], columns="toolkit", values="robust_accuracy"
    )
    assert (pgd["art"] == pgd["foolbox"]).all()  # no random start: the same examples in both toolkits


def test_defences_scenario_writes_the_tradeoff(store, model_cache) -> None:
    fewer = ["data.n_samples=60", "model.training.epochs=10", "robustness.clever.n_samples=1"]
    table = run_scenario("scenarios/defences.yaml", fewer, log=lambda _: None)
    assert (table["status"] == "ok").all()
    assert table["defence"].nunique() == 7 and set(table["evaluation"]) == {"direct", "transfer"}
    run_id = table.attrs["parent_run_id"]
    tradeoff = pd.read_csv(io.StringIO(mlflow.artifacts.load_text(f"runs:/{run_id}/tradeoff.csv")))
    assert tradeoff["defence"].nunique() == 7 and tradeoff["robust_accuracy_worst_case"].notna().all()
    at = tradeoff[tradeoff["eps"] == 0.1].set_index("defence")["robust_accuracy_worst_case"]
    assert at["pgd_at"] > at["none"] + 0.1  # adversarial training buys robustness at eps 0.1
    assert "plots/tradeoff.png" in {
        a.path for a in mlflow.artifacts.list_artifacts(run_id=run_id, artifact_path="plots")
    }
