"""`transfer: models`: every cell's examples judged by every other model of the study, as a source x target matrix
with a heat-map; `export: npz`: every cell's examples with their labels and predictions on its child run. The
transferred numbers are checked by hand: the exported examples, fed to the target model, give the same row."""

from __future__ import annotations

import ast
import io
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from bridge import run_scenario
from bridge.engine.victim import victim
from bridge.runner.preflight import preflight
from bridge.scenario.load import load_raw
from tests.conftest import TRAINING, module_store

SCENARIO: dict[str, Any] = {
    "name": "transfer-models",
    "seed": 0,
    "device": "cpu",
    "batch_size": 60,
    "data": {"dataset": "digits", "n_samples": 60},
    "models": [
        {"name": "cnn-a", "arch": "small_cnn", "training": TRAINING},
        {"name": "cnn-b", "arch": "small_cnn", "training": {**TRAINING, "seed": 1}},  # the same net, another seed
    ],
    "attacks": [{"attack": "fgsm", "norm": "linf", "eps": 0.1, "toolkit": ["art", "torchattacks"]}],
    "transfer": "models",
    "export": "npz",
}


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory, model_cache: str) -> pd.DataFrame:
    with module_store(tmp_path_factory, "transfer-models"):
        yield run_scenario(SCENARIO, log=lambda _: None)


def _examples(run_id: str) -> dict[str, np.ndarray]:
    path = mlflow.artifacts.download_artifacts(f"runs:/{run_id}/examples.npz")
    with np.load(path, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


def test_every_cell_is_judged_by_every_other_model(study: pd.DataFrame) -> None:
    assert (study["status"] == "ok").all()
    direct, moved = study[study["evaluation"] == "direct"], study[study["evaluation"] == "transfer"]
    assert len(direct) == 2 * 2 and len(moved) == 2 * 2  # 2 models x 2 toolkits, each onto the other model
    assert (direct["source"] == direct["model"]).all()
    assert set(zip(moved["source"], moved["model"], strict=True)) == {("cnn-a", "cnn-b"), ("cnn-b", "cnn-a")}
    assert moved["forward_calls"].isna().all()  # no attack ran on the target


def test_a_transferred_row_is_the_target_model_on_the_exported_examples(study: pd.DataFrame) -> None:
    plan = load_raw(SCENARIO)
    models = {r.name: victim(r) for r in preflight(plan, lambda _: None, fetch=False).recipes}
    for row in study[study["evaluation"] == "transfer"].itertuples():
        source = study[(study["evaluation"] == "direct") & (study["model"] == row.source)
                       & (study["toolkit"] == row.toolkit)].iloc[0]  # fmt: skip
        made = _examples(source["run_id"])
        target = models[row.model]
        assert np.array_equal(made["label"], target.y.numpy())  # the same samples, in the same order
        pred = target.model.predict(torch.as_tensor(made["x_adv"]), 60).argmax(1).numpy()
        robust = (target.clean_pred.numpy() == made["label"]) & (pred == made["label"])
        assert row.robust_accuracy == pytest.approx(robust.mean())
        assert np.abs(made["x_adv"] - target.x.numpy()).max() <= 0.1 + 1e-6  # within the source cell's eps


def test_exported_examples_carry_the_bridge_verdict(study: pd.DataFrame) -> None:
    for row in study[study["evaluation"] == "direct"].itertuples():
        made = _examples(row.run_id)
        assert made["x_adv"].shape == (60, 1, 8, 8) and made["x_adv"].dtype == np.float32
        assert (made["target"] == -1).all()  # untargeted
        fooled = (made["clean_pred"] == made["label"]) & (made["adv_pred"] != made["label"])
        assert np.array_equal(made["success"], fooled)
        robust = (made["clean_pred"] == made["label"]) & (made["adv_pred"] == made["label"])
        assert row.robust_accuracy == pytest.approx(robust.mean())


def test_the_parent_holds_the_matrix_and_a_heat_map(study: pd.DataFrame) -> None:
    parent = study.attrs["parent_run_id"]
    matrix = pd.read_csv(io.StringIO(mlflow.artifacts.load_text(f"runs:/{parent}/transfer/matrix.csv")))
    assert len(matrix) == 8  # 2 toolkits x (2 sources x 2 targets), the diagonal being the direct attack
    diagonal = matrix[matrix["source"] == matrix["target"]]
    assert (diagonal["evaluation"] == "direct").all() and len(diagonal) == 4
    for row in matrix.itertuples():  # every entry is the table's number for that cell
        cell = study[study["run_id"] == row.run_id].iloc[0]
        assert (cell["model"], cell["source"], cell["robust_accuracy"]) == (row.target, row.source, row.robust_accuracy)
    png = mlflow.artifacts.download_artifacts(f"runs:/{parent}/plots/transfer/fgsm-linf-eps=0.1.png")
    image = np.asarray(Image.open(png).convert("L"), dtype=float)
    assert image.std() > 10  # drawn, not blank
    report = mlflow.artifacts.load_text(f"runs:/{parent}/report/report.html")
    section = report.split("Transfer across models")[1]
    assert "transfer/fgsm-linf-eps=0.1.png" in section and "data:image/png;base64," in section


def test_a_transferred_cells_command_runs_that_pair_alone(study: pd.DataFrame) -> None:
    row = study[(study["evaluation"] == "transfer") & (study["toolkit"] == "art")].iloc[0]
    markdown = mlflow.artifacts.load_text(f"runs:/{study.attrs['parent_run_id']}/report/report.md")
    snippet = markdown.split(f"run `{row['run_id']}`")[1].split("```")[1]
    overrides = ast.literal_eval(snippet[snippet.index("[") : snippet.rindex("]") + 1])
    assert [o.partition("=")[0] for o in overrides] == ["attacks", "models"]  # transfer: models is the scenario's
    again = run_scenario(SCENARIO, overrides, log=lambda _: None)
    assert len(again) == 2 + 2  # fgsm in art on both models, and each onto the other
    same = again[(again["evaluation"] == "transfer") & (again["source"] == row["source"])].iloc[0]
    assert same["robust_accuracy"] == row["robust_accuracy"]
