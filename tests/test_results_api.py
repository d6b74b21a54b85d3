"""`open_study`: a real tiny study read back from its store alone, its per-sample table and examples hand-checked
against the table and the model itself."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import TRAINING, module_store, write_scenario
from mlflow.tracking import MlflowClient

from bridge import open_study, run_scenario
from bridge.core.errors import ScenarioError
from bridge.data.dataset import load_split, select

N = 30
SCENARIO = f"""
name: results-api
seed: 0
batch_size: {N}
data: {{dataset: digits, n_samples: {N}}}
model: {{arch: small_cnn, training: {json.dumps(TRAINING)}}}
attacks:
  - {{attack: fgsm, norm: linf, eps: 0.1, toolkit: [art, torchattacks]}}          # parity cells: examples kept
  - {{attack: pgd, norm: l2, eps: 1.0, steps: 5, toolkit: [art, torchattacks]}}   # examples not kept
"""
IDENTITY = ["model", "defence", "attack", "norm", "eps", "targeted", "variant", "evaluation", "toolkit", "run_id"]


@pytest.fixture(scope="module")
def study(tmp_path_factory, model_cache):
    with module_store(tmp_path_factory, "results-api") as (tmp, uri):
        table = run_scenario(write_scenario(tmp, SCENARIO), log=lambda _: None)
        yield table, uri


def _state(client: MlflowClient, run_id: str) -> tuple:
    run = client.get_run(run_id)
    files = sorted(a.path for a in client.list_artifacts(run_id) for a in [a, *client.list_artifacts(run_id, a.path)])
    return run.data.params, run.data.tags, run.data.metrics, run.info.status, files


def test_open_study_reads_the_studys_table_and_writes_nothing(study) -> None:
    table, uri = study
    client = MlflowClient(uri)
    parent = table.attrs["parent_run_id"]
    before = _state(client, parent)
    s = open_study(uri=uri)  # latest
    assert s.run_id == parent and s.n_samples == N and s.experiment == "results-api"
    assert open_study(parent).run_id == parent  # the store of $MLFLOW_TRACKING_URI, as the command line's default
    columns = [c for c in table.columns if c not in ("wall_time_s", "samples_per_s")]
    assert s.table[columns].equals(table[columns]) and len(s.table) == 4
    assert s.table.attrs["parent_run_id"] == parent and s.table.attrs["n_samples"] == N
    assert list(s.checks["name"]) == [c["name"] for c in table.attrs["checks"]]
    assert s.clean == {"small_cnn": table["clean_accuracy"].iloc[0]}
    assert _state(client, parent) == before  # nothing re-aggregated onto the parent


def test_the_per_sample_table_holds_every_cell_and_agrees_with_the_table(study) -> None:
    table, uri = study
    ps = open_study(uri=uri).per_sample
    assert set(IDENTITY) <= set(ps.columns[: list(ps.columns).index("sample")])  # identity first, then `sample`
    assert len(ps) == 4 * N
    for row in table.itertuples():
        mine = ps[ps["run_id"] == row.run_id]
        assert len(mine) == N and list(mine["sample"]) == list(range(N))
        assert mine["robust"].mean() == pytest.approx(row.robust_accuracy)
        assert mine["clean_correct"].mean() == pytest.approx(row.clean_accuracy)
        assert (mine["attack"] == row.attack).all() and (mine["toolkit"] == row.toolkit).all()
    # every cell judged the same samples, in the same order
    assert (ps.groupby("run_id")["label"].apply(tuple).nunique()) == 1


def test_a_kept_cells_examples_are_what_the_model_says(study, digits_model) -> None:
    table, uri = study
    s = open_study(uri=uri)
    run_id = table.query("attack == 'fgsm' and toolkit == 'art'")["run_id"].iloc[0]
    ex = s.examples(run_id)
    assert set(ex) == {"x_adv", "label", "target", "clean_pred", "adv_pred", "success"}
    assert ex["x_adv"].shape == (N, 1, 8, 8)
    data = select(load_split("digits", "test"), N, seed=0)
    assert np.array_equal(ex["label"], data.y.numpy())
    assert np.abs(ex["x_adv"] - data.x.numpy()).max() <= 0.1 + 1e-6  # within the budget
    adv_pred = digits_model.predict(torch.as_tensor(ex["x_adv"])).argmax(1).numpy()
    assert np.array_equal(adv_pred, ex["adv_pred"])  # the same model, recomputed here
    assert np.array_equal(ex["success"], (ex["clean_pred"] == ex["label"]) & (ex["adv_pred"] != ex["label"]))
    assert (ex["target"] == -1).all()
    by_name = s.examples("art · fgsm-linf eps=0.1")  # its unique run name
    assert all(np.array_equal(by_name[k], ex[k]) for k in ex)


def test_a_cell_without_examples_says_how_to_keep_them(study) -> None:
    table, uri = study
    s = open_study(uri=uri)
    run_id = table.query("attack == 'pgd' and toolkit == 'art'")["run_id"].iloc[0]
    with pytest.raises(ScenarioError) as err:
        s.examples(run_id)
    message = str(err.value)
    assert "\n" not in message and "art · pgd-l2 eps=1" in message and run_id in message
    assert "export: npz" in message
    with pytest.raises(ScenarioError, match="no cell of study"):
        s.examples("foolbox · pgd-l2 eps=1")
    with pytest.raises(ScenarioError, match="no such run"):
        open_study("0123456789abcdef", uri)


def test_an_exported_examples_file_is_read_first(study, tmp_path) -> None:
    table, uri = study
    run_id = table.query("attack == 'pgd' and toolkit == 'torchattacks'")["run_id"].iloc[0]
    arrays = {"x_adv": np.full((N, 1, 8, 8), 0.5, np.float32), "label": np.arange(N), "target": -np.ones(N, int),
              "clean_pred": np.arange(N), "adv_pred": np.zeros(N, int), "success": np.ones(N, bool)}  # fmt: skip
    np.savez_compressed(tmp_path / "examples.npz", **arrays)  # as `export: npz` writes it on a cell's run
    MlflowClient(uri).log_artifact(run_id, str(tmp_path / "examples.npz"))
    ex = open_study(uri=uri).examples(run_id)
    assert set(ex) == set(arrays) and all(np.array_equal(ex[k], arrays[k]) for k in arrays)
