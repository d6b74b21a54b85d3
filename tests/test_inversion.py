"""Model inversion (MIFace): the bridge's judgement of reconstructions hand-checked, the section's refusals, the
evaluator check on a model built to trip it, and (slow) a real study whose reconstructions are recognisable."""

from __future__ import annotations

import io

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from bridge import run_scenario
from bridge.core.errors import ScenarioError
from bridge.scenario.load import load_raw
from bridge.studies.inversion.aggregate import evaluator_competent
from bridge.studies.inversion.run import class_means, judge
from tests.conftest import TRAINING


def test_each_reconstruction_is_judged_by_the_evaluator_and_the_nearest_class_mean() -> None:
    x = torch.tensor([[[[0.0, 0.0]]], [[[0.0, 2.0]]], [[[4.0, 0.0]]], [[[4.0, 2.0]]]])  # two images per class
    means = class_means(x, torch.tensor([0, 0, 1, 1]), 2)
    assert means.flatten(1).tolist() == [[0.0, 1.0], [4.0, 1.0]]
    recon = torch.tensor([[[[1.0, 1.0]]], [[[1.0, 1.0]]]])  # both nearer class 0's mean (distance 1 vs 3)
    probs = torch.tensor([[0.9, 0.1], [0.3, 0.7]])
    table = judge(recon, torch.tensor([0, 1]), means, probs, evaluator_pred=torch.tensor([0, 0]))
    assert table["victim_confidence"].tolist() == pytest.approx([0.9, 0.7])
    assert table["distance_to_class_mean"].tolist() == pytest.approx([1.0, 3.0])
    assert table["nearest_mean"].tolist() == [0, 0] and table["nearest_mean_correct"].tolist() == [True, False]
    assert table["evaluator_correct"].tolist() == [True, False]


def test_the_evaluator_check_fires_on_an_evaluator_that_cannot_classify() -> None:
    assert evaluator_competent({"evaluator_clean_accuracy": 0.42}).status == "failed"
    assert evaluator_competent({"evaluator_clean_accuracy": 0.95}).status == "passed"
    assert evaluator_competent({"evaluator_clean_accuracy": float("nan")}).status == "skipped"


BASE = {"name": "inv", "data": {"n_samples": 40}, "model": {"arch": "small_cnn", "training": TRAINING}}


@pytest.mark.parametrize(
    ("inversion", "message"),
    [
        ({"classes": [0, 12]}, r"inversion\.classes: \[12\] not in 0\.\.9"),
        ({"classes": [1, 1]}, "inversion.classes: all, or distinct class indices"),
        ({"evaluator": {"torchscript": "m.pt"}}, "inversion.evaluator: a zoo model the bridge trains"),
        ({"max_iter": 0}, r"inversion\.max_iter: Input should be greater than 0"),
    ],
)
def test_bad_inversion_sections_are_one_line(inversion: dict, message: str) -> None:
    with pytest.raises(ScenarioError, match=message) as info:
        load_raw({**BASE, "inversion": inversion})
    assert "\n" not in str(info.value)


@pytest.mark.slow
def test_miface_reconstructions_are_recognised_and_shown(store: str, model_cache: str) -> None:
    scenario = {**BASE, "seed": 0, "device": "cpu",
                "inversion": {"classes": [0, 1, 2, 3], "max_iter": 300, "learning_rate": 0.1, "batch_size": 4,
                              "evaluator": {"arch": "lenet", "training": {**TRAINING, "seed": 1}}}}  # fmt: skip
    table = run_scenario(scenario, log=lambda _: None)
    (row,) = table.to_dict("records")
    assert row["study"] == "inversion" and row["status"] == "ok"
    assert row["evaluator_clean_accuracy"] > 0.9  # a competent judge ...
    assert row["evaluator_accuracy_on_reconstructions"] >= 0.75  # ... recognises the reconstructions
    assert row["nearest_mean_accuracy"] >= 0.75
    client = mlflow.MlflowClient(store)
    child = client.get_run(row["run_id"])
    assert child.data.tags["native_class"] == "MIFace" and child.data.params["max_iter"] == "300"
    per_class = pd.read_csv(client.download_artifacts(row["run_id"], "per_sample.csv"))
    assert per_class["class"].tolist() == [0, 1, 2, 3]
    assert row["evaluator_accuracy_on_reconstructions"] == pytest.approx(per_class["evaluator_correct"].mean())
    parent = table.attrs["parent_run_id"]
    png = client.download_artifacts(parent, "inversion/small_cnn.png")
    assert np.asarray(Image.open(png).convert("L"), dtype=float).std() > 10
    report = mlflow.artifacts.load_text(f"runs:/{parent}/report/report.html")
    section = report.split('<section id="inversion">')[1].split("</section>")[0]
    assert "<h2>Model inversion</h2>" in section and "inversion/small_cnn.png" in section
    assert "No evasion grid in this scenario" in report
    saved = pd.read_csv(io.StringIO(mlflow.artifacts.load_text(f"runs:/{parent}/inversion/table.csv")))
    assert saved["nearest_mean_accuracy"].tolist() == [row["nearest_mean_accuracy"]]
