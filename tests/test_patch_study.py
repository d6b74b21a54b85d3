"""A real patch study on digits, recorded in a real MLflow store: the bridge's patch and ART's, trained on the train
split to make test images a 0, judged at two scales on their model and on that model behind spatial smoothing."""

from __future__ import annotations

from collections.abc import Iterator

import pandas as pd
import pytest

from bridge.runner.aggregate import read_study
from bridge.runner.study import run_scenario
from tests.conftest import TRAINING, module_store

pytestmark = pytest.mark.slow

SCENARIO = {
    "name": "patch-study",
    "batch_size": 200,
    "data": {"dataset": "digits", "split": "test", "n_samples": 200},
    "model": {"arch": "small_cnn", "training": TRAINING},
    "defences": ["none", {"kind": "spatial_smoothing", "window_size": 3, "gradient": "exact"}],
    "patch": {"shape": "circle", "target": 0, "scales": [0.1, 0.4], "n_train": 200, "steps": 100,
              "learning_rate": 0.1, "art": {"max_iter": 3, "learning_rate": 5.0}, "grid": 4},
}  # fmt: skip


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory, model_cache: str) -> Iterator[tuple[pd.DataFrame, str]]:
    with module_store(tmp_path_factory, "patch") as (_, uri):
        yield run_scenario(SCENARIO, log=lambda _: None), uri


def _curve(table: pd.DataFrame, toolkit: str, model: str = "small_cnn") -> pd.DataFrame:
    return table[(table["toolkit"] == toolkit) & (table["model"] == model)].sort_values("scale")


def test_the_bridge_patch_grows_with_scale(study: tuple[pd.DataFrame, str]) -> None:
    table, _ = study
    small, large = _curve(table, "bridge").itertuples()
    assert large.success - small.success > 0.2  # measured: about 0.0 at 0.1, 0.4 to 0.6 at 0.4
    assert large.success > large.control_success + 0.1  # the content, not the covering, does it
    assert (small.clean_accuracy > 0.9) and (table["n_trials"] < table["n_samples"]).all()  # eligible: not 0s
    defended = _curve(table, "bridge", "small_cnn/median-3x3")
    assert list(defended["evaluation"]) == ["defence", "defence"] and defended["success"].between(0, 1).all()


def test_art_row_ran_or_says_why(study: tuple[pd.DataFrame, str]) -> None:
    table, uri = study
    art = table[table["toolkit"] == "art"]
    assert len(art) and art["native_class"].isin(["AdversarialPatchNumpy", "AdversarialPatchPyTorch"]).all()
    assert (art["status"] == "ok").all() and art["success"].between(0, 1).all()
    recorded = read_study(uri, table.attrs["parent_run_id"])
    (made,) = [r for r in recorded.results if r.kind == "train" and r.row["toolkit"] == "art"]
    tags = recorded.store.client.get_run(made.run_id).data.tags
    assert tags["native_class"] == art["native_class"].iloc[0] and tags["native_class_why"]


def test_parent_holds_curves_patches_and_checks(study: tuple[pd.DataFrame, str]) -> None:
    table, uri = study
    recorded = read_study(uri, table.attrs["parent_run_id"])
    again = recorded.summaries["patch"].table
    pd.testing.assert_frame_equal(again.drop(columns="run_id"), table.drop(columns=["run_id", "study"]))
    client, parent = recorded.store.client, recorded.run.info.run_id

    def listed(path: str) -> set[str]:
        return {a.path for a in client.list_artifacts(parent, path)}

    assert {"patch/table.csv", "patch/checks.csv", "patch/plots", "patch/patches", "patch/grids"} <= listed("patch")
    assert listed("patch/plots") == {"patch/plots/success_vs_scale.png"}
    assert listed("patch/patches/small_cnn") == {
        "patch/patches/small_cnn/art.png",
        "patch/patches/small_cnn/bridge.png",
    }
    checks = pd.DataFrame(table.attrs["checks"]).set_index("name")
    assert checks.loc["patch_success_grows_with_scale", "study"] == "patch"
    assert set(checks.index) >= {"patch_success_grows_with_scale", "patch_beats_noise"}
    assert recorded.run.data.metrics["patch.success.bridge.small_cnn.small_cnn.s0.4"] == pytest.approx(
        float(_curve(table, "bridge")["success"].iloc[-1])
    )
