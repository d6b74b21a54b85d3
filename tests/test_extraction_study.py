"""A real extraction study on digits, recorded in a real MLflow store: ART's CopycatCNN and adaptive KnockoffNets
steal the digits CNN, and a broken attack (random KnockoffNets whose victim answers are read one class off) shows
the check that catches it. Queries are counted on the victim itself and must equal each budget.

Adaptive sampling uses the `loss` reward: with `all`, `cert` or `div` ART's bandit, fed the victim's logits, skews
(or collapses) the classes it queries, and the check rightly finds those below the true-label baseline here."""

from __future__ import annotations

from collections.abc import Iterator

import pandas as pd
import pytest
import torch

import adapters.art_extraction
from adapters.art_adapter import ModelView
from bridge.data.dataset import load_split
from bridge.runner.aggregate import read_study
from bridge.runner.study import run_scenario
from bridge.studies.extraction.thief import load_thief
from tests.conftest import TRAINING, module_store

pytestmark = pytest.mark.slow

BUDGETS = [50, 150]
BROKEN = "knockoff-random-prob"


class Misread(ModelView):
    """The victim's probabilities read one class off (class k's answer given as k + 1): a broken extraction."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = super().forward(x)
        return out.roll(1, dims=1) if self.softmax else out


SCENARIO = {
    "name": "extraction-study",
    "data": {"dataset": "digits", "split": "test"},
    "model": {"arch": "small_cnn", "training": TRAINING},
    "extraction": {
        "thief": {"arch": "small_cnn", "training": {"epochs": 15, "lr": 0.001, "batch_size": 16, "seed": 0}},
        "queries": {"dataset": "digits", "split": "train"},
        "budgets": BUDGETS,
        "attacks": [
            {"attack": "copycat"},
            {"attack": "knockoff", "sampling": "adaptive", "reward": "loss"},
            {"attack": "knockoff", "use_probability": True},
        ],  # fmt: skip
        "ood": {"dataset": "digits", "split": "test", "transform": "invert"},
    },
}


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory, model_cache: str) -> Iterator[tuple[pd.DataFrame, str]]:
    with module_store(tmp_path_factory, "extraction") as (_, uri), pytest.MonkeyPatch.context() as mp:
        mp.setattr(adapters.art_extraction, "ModelView", Misread)
        yield run_scenario(SCENARIO, log=lambda _: None), uri


def _rows(table: pd.DataFrame, attack: str) -> pd.DataFrame:
    return table[table["attack"] == attack].sort_values("budget")


def test_queries_counted_equal_the_budget(study: tuple[pd.DataFrame, str]) -> None:
    table, _ = study
    attacks = table[table["attack"] != "true_labels"]
    assert len(attacks) == 3 * len(BUDGETS) and (attacks["status"] == "ok").all()
    assert attacks["queries"].tolist() == attacks["budget"].astype(float).tolist()
    assert (attacks["queries_per_budget"] == 1.0).all()
    assert (table.loc[table["attack"] == "true_labels", "queries"] == 0).all()


def test_fidelity_rises_with_the_budget(study: tuple[pd.DataFrame, str]) -> None:
    table, _ = study
    for column in ("test_accuracy", "fidelity", "fidelity_ood"):
        assert table[column].between(0, 1).all()
    for attack in ("copycat", "knockoff-adaptive-loss", "true_labels"):
        small, large = _rows(table, attack)["fidelity"]
        assert large > small, attack
    copycat = _rows(table, "copycat").iloc[-1]
    assert copycat["fidelity"] > 0.8 and copycat["victim_accuracy"] > 0.95
    assert _rows(table, BROKEN)["fidelity"].max() < 0.3  # the misread answers teach the wrong classes


def test_broken_attack_trips_the_check(study: tuple[pd.DataFrame, str]) -> None:
    table, _ = study
    checks = pd.DataFrame(table.attrs["checks"]).set_index("name")
    below = checks.loc["extraction_not_below_true_labels"]
    assert below["status"] == "failed" and below["study"] == "extraction"
    assert below["cells"].startswith(f"{BROKEN} (")  # the working attacks pass: only the broken one is named
    assert checks.loc["queries_match_budget", "status"] == "passed"


def test_recorded_and_reloadable(study: tuple[pd.DataFrame, str]) -> None:
    table, uri = study
    recorded = read_study(uri, table.attrs["parent_run_id"])
    again = recorded.summaries["extraction"].table
    pd.testing.assert_frame_equal(again.drop(columns="run_id"), table.drop(columns=["run_id", "study"]))
    assert again["run_id"].notna().all() and len(recorded.results) == 4 * len(BUDGETS)
    client = recorded.store.client
    parent = {a.path for a in client.list_artifacts(recorded.run.info.run_id, "extraction")}
    assert {"extraction/table.csv", "extraction/plots"} <= parent
    (result,) = [r for r in recorded.results if r.row["attack"] == "copycat" and r.row["budget"] == 150]
    assert {a.path for a in client.list_artifacts(result.run_id)} >= {"thief.pt", "thief.json", "translation.json"}
    thief = load_thief(result)  # the stolen model, rebuilt from the store alone, gives the recorded predictions
    test = load_split("digits", "test")  # the evaluation samples: data.n_samples left out takes the whole split
    with torch.no_grad():
        pred = thief(test.x).argmax(1)
    assert torch.equal(pred, torch.tensor(result.per_sample["thief_pred"].to_numpy()))
    assert float((pred == test.y).float().mean()) == pytest.approx(result.row["test_accuracy"])
