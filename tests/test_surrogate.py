"""`transfer_from:` the black-box transfer attack. The extraction study steals the digits CNN; every cell of the
evasion grid is crafted again on the thief and judged by the victim. The rows are transfers (source `thief:...`),
weaker than the white-box cells on the victim itself yet far from harmless, and recorded like every other cell."""

from __future__ import annotations

import mlflow
import pandas as pd
import pytest

from bridge.runner.aggregate import read_study
from bridge.runner.study import run_scenario
from tests.conftest import TRAINING

pytestmark = pytest.mark.slow

SCENARIO = {
    "name": "surrogate",
    "data": {"dataset": "digits", "split": "test", "n_samples": 100},
    "model": {"arch": "small_cnn", "training": TRAINING},
    "extraction": {
        "thief": {"arch": "small_cnn", "training": {"epochs": 15, "lr": 0.001, "batch_size": 16, "seed": 0}},
        "queries": {"dataset": "digits", "split": "train"},
        "budgets": [300],
        "attacks": [{"attack": "copycat"}],
    },
    "attacks": [
        {
            "attack": "pgd",
            "norm": "linf",
            "eps": 0.2,
            "steps": 10,
            "step_size": 0.05,
            "random_start": False,
            "toolkit": ["torchattacks", "art"],
        }
    ],  # fmt: skip
    "transfer_from": "copycat",
}


def test_cells_crafted_on_the_thief_transfer_to_the_victim(store: str, model_cache: str) -> None:
    table = run_scenario(SCENARIO, log=lambda _: None)
    evasion = table[table["study"] == "evasion"].set_index(["evaluation", "toolkit"])
    assert (evasion["status"] == "ok").all() and len(evasion) == 4
    assert set(evasion.loc["transfer", "source"]) == {"thief:copycat"}
    for toolkit in ("torchattacks", "art"):
        direct, moved = evasion.loc[("direct", toolkit)], evasion.loc[("transfer", toolkit)]
        assert moved["clean_accuracy"] == direct["clean_accuracy"] > 0.9  # the victim's, on the same samples
        # white-box on the victim is the stronger attack; the stolen copy's examples still fool the victim often
        assert direct["robust_accuracy"] < moved["robust_accuracy"] < direct["clean_accuracy"] - 0.2
    # without random start the same examples in both toolkits, so the same judgement by the victim
    assert evasion.loc[("transfer", "art"), "robust_accuracy"] == evasion.loc[("transfer", "torchattacks"),
                                                                                 "robust_accuracy"]  # fmt: skip
    run_id = table.attrs["parent_run_id"]
    children = mlflow.search_runs(search_all_experiments=True, filter_string=f"tags.mlflow.parentRunId = '{run_id}'")
    moved = children[children["tags.transferred_from"] == "thief:copycat"]
    assert len(moved) == 2 and set(moved["tags.native_class"]) == {"PGD", "ProjectedGradientDescent"}
    again = read_study(store, run_id).summaries["evasion"].table
    pd.testing.assert_frame_equal(again.drop(columns="run_id"), table[table["study"] == "evasion"][again.columns]
                                  .drop(columns="run_id").reset_index(drop=True), check_dtype=False)  # fmt: skip
