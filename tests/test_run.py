"""A scenario run writes the expected parent and child runs, metrics and artifacts into a real store."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml
from conftest import TRAINING, module_store, write_scenario
from mlflow.tracking import MlflowClient

from bridge import run_scenario
from bridge.runner.aggregate import reaggregate

# What a reviewer compares in the runs table (a child's metrics); the rest is in its row and result.json.
METRICS = {"clean_accuracy", "robust_accuracy", "attack_success_rate", "budget_violations", "queries_per_sample",
           "wall_time_s"}  # fmt: skip
ROW_ONLY = {"linf_mean", "linf_max", "l2_mean", "l2_max", "l0_mean", "samples_per_s", "forward_calls",
            "backward_calls"}  # fmt: skip

SCENARIO = f"""
name: e2e
seed: 1
batch_size: 16
data: {{dataset: digits, split: test, n_samples: 40}}
model: {{arch: small_cnn, training: {json.dumps(TRAINING)}}}
attacks:
  - {{attack: fgsm, norm: linf, eps: [0.1, 0.3], toolkit: [art, foolbox, torchattacks]}}
  - {{attack: bim, norm: l2, eps: 1.0, steps: 3, toolkit: [foolbox, torchattacks]}}
  # a real toolkit error at run time: ART refuses batch_size 0 when the attack is built
  - {{attack: pgd, norm: linf, eps: 0.1, steps: 3, random_start: false, toolkit: art, options: {{batch_size: 0}}}}
"""


def _artifacts(client: MlflowClient, run_id: str, path: str = "") -> set[str]:
    out = set()
    for item in client.list_artifacts(run_id, path):
        out |= _artifacts(client, run_id, item.path) if item.is_dir else {item.path}
    return out


@pytest.fixture(scope="module")
def e2e(tmp_path_factory, model_cache):
    with module_store(tmp_path_factory, "e2e") as (tmp, uri):
        table = run_scenario(write_scenario(tmp, SCENARIO), log=lambda _: None)
        yield table, MlflowClient(uri), tmp


def test_parent_and_child_runs(e2e) -> None:
    table, client, _ = e2e
    exp = client.get_experiment_by_name("e2e")
    assert exp.experiment_id == table.attrs["experiment_id"]
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"
    runs = client.search_runs([exp.experiment_id])
    parent = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == table.attrs["parent_run_id"]]
    assert len(parent) == 1 and parent[0].info.status == "FINISHED"
    assert {c.data.tags["advbridge.kind"] for c in children} == {"evasion.attack", "evasion.victim"}
    probes = [c for c in children if c.data.tags["advbridge.kind"] == "evasion.victim"]
    assert len(probes) == 1 and probes[0].data.metrics["clean_accuracy"] == table["clean_accuracy"].iloc[0]
    children = [c for c in children if c.data.tags["advbridge.kind"] == "evasion.attack"]
    assert len(children) == 6 + 1 + 1  # fgsm 2x3, bim l2 in foolbox, the failing art pgd
    names = {c.info.run_name for c in children}
    assert "foolbox · fgsm-linf eps=0.1" in names and "foolbox · bim-l2 eps=1" in names
    assert len(names) == len(children)  # unique within the study
    assert parent[0].data.metrics["cells_unsupported"] == 1  # torchattacks has no L2 BIM: reported, no child


def test_child_metrics_params_tags(e2e) -> None:
    table, client, _ = e2e
    ok = table[table["status"] == "ok"]
    assert len(ok) == 7
    for row in ok.itertuples():
        run = client.get_run(row.run_id)
        assert METRICS <= set(run.data.metrics), METRICS - set(run.data.metrics)
        assert not ROW_ONLY & set(run.data.metrics)
        assert run.data.metrics["robust_accuracy"] == pytest.approx(row.robust_accuracy)
        for tag in ("toolkit", "attack", "norm", "eps", "model", "dataset"):
            assert tag in run.data.tags
        assert run.data.params["attack"] == row.attack and run.data.params["toolkit"] == row.toolkit
        assert run.data.params["native_class"] == row.native_class
        assert {"per_sample.csv", "samples.png", "translation.json"} <= _artifacts(client, row.run_id)
        assert run.data.metrics["budget_violations"] == 0
        assert row.forward_calls > 0 and row.backward_calls > 0
        duration = (run.info.end_time - run.info.start_time) / 1000  # MLflow's Duration: the attack's own time
        assert duration == pytest.approx(run.data.metrics["wall_time_s"], abs=0.002)


def test_logged_metrics_match_the_per_sample_table(e2e) -> None:
    table, client, tmp = e2e
    row = table[(table["attack"] == "fgsm") & (table["toolkit"] == "torchattacks") & (table["eps"] == 0.3)].iloc[0]
    local = client.download_artifacts(row.run_id, "per_sample.csv", str(tmp))
    per_sample = pd.read_csv(local)
    assert len(per_sample) == 40
    assert row.robust_accuracy == pytest.approx(per_sample["robust"].mean())
    assert row.clean_accuracy == pytest.approx(per_sample["clean_correct"].mean())
    assert row.linf_max == pytest.approx(0.3, abs=1e-6)  # FGSM moves interior pixels by exactly eps
    assert row.attack_success_rate == pytest.approx(per_sample["success"].sum() / per_sample["clean_correct"].sum())
    # FGSM: one forward and one backward per batch of 16 (40 samples -> 3 batches)
    assert (row.forward_calls, row.backward_calls, row.forward_samples) == (3, 3, 40)
    # the larger budget is never weaker
    small = table[(table["attack"] == "fgsm") & (table["toolkit"] == "torchattacks") & (table["eps"] == 0.1)]
    assert row.robust_accuracy <= small.iloc[0].robust_accuracy


def test_failed_cell_is_recorded_and_study_goes_on(e2e) -> None:
    table, client, _ = e2e
    failed = table[table["status"].str.startswith("failed")]
    assert len(failed) == 1 and failed.iloc[0].toolkit == "art"
    run = client.get_run(failed.iloc[0].run_id)
    assert run.info.status == "FAILED"
    assert "error.txt" in _artifacts(client, run.info.run_id)
    assert "batch" in run.data.tags["error"].lower()
    again, _ = reaggregate(table.attrs["tracking_uri"], table.attrs["parent_run_id"])  # from the store alone
    pd.testing.assert_frame_equal(again, table)  # the failed cell keeps its row
    logged = client.load_table(table.attrs["experiment_id"], "comparison/comparison.json",
                               run_ids=[table.attrs["parent_run_id"]])  # fmt: skip
    assert len(logged) == len(table)  # rewritten, not appended to (MLflow's log_table appends)


def test_parent_artifacts(e2e) -> None:
    table, client, tmp = e2e
    parent_id = table.attrs["parent_run_id"]
    arts = _artifacts(client, parent_id)
    assert {
        "scenario/scenario.yaml",
        "scenario/resolved.yaml",
        "model/small_cnn/record.json",
        "comparison/comparison.csv",
        "comparison/comparison.md",
        "comparison/comparison.json",
        "plots/small_cnn/robust_accuracy_vs_eps-fgsm-linf.png",
    } <= arts, arts
    csv = pd.read_csv(client.download_artifacts(parent_id, "comparison/comparison.csv", str(tmp)))
    assert len(csv) == len(table) == 9
    assert csv["status"].str.startswith("unsupported: torchattacks has no bim for norm l2").sum() == 1
    logged = client.load_table(table.attrs["experiment_id"], "comparison/comparison.json", run_ids=[parent_id])
    assert len(logged) == 9
    resolved = client.download_artifacts(parent_id, "scenario/resolved.yaml", str(tmp))
    cells = yaml.safe_load(Path(resolved).read_text())["cells"]
    fgsm_art = next(c for c in cells if c["attack"] == "fgsm" and c["toolkit"] == "art")
    assert fgsm_art["native_class"] == "FastGradientMethod" and fgsm_art["constructor"]["eps"] == 0.1


def test_artifacts_live_beside_the_sqlite_file(e2e) -> None:
    table, client, tmp = e2e
    run = client.get_run(table.attrs["parent_run_id"])
    assert run.info.artifact_uri.startswith((tmp / "store" / "artifacts" / "e2e").as_uri())
    assert (tmp / "store" / "artifacts" / "e2e").is_dir()


def test_second_run_reuses_the_cached_model(e2e, tmp_path) -> None:
    table, client, _ = e2e
    scenario = {
        "name": "e2e-again",
        "data": {"n_samples": 10},
        "model": {"arch": "small_cnn", "training": TRAINING},
        "attacks": [{"attack": "fgsm", "norm": "linf", "eps": 0.1, "toolkit": "torchattacks"}],
    }
    messages: list[str] = []
    again = run_scenario(scenario, log=messages.append)
    assert not any("training" in m for m in messages)
    run = client.get_run(again.attrs["parent_run_id"])
    assert "train_time_s.small_cnn" not in run.data.metrics
    first = client.get_run(table.attrs["parent_run_id"])
    assert run.data.params["model.small_cnn.sha256"] == first.data.params["model.small_cnn.sha256"]


def test_parent_fails_only_when_every_cell_failed(store, model_cache) -> None:
    scenario = {
        "name": "all-fail",
        "data": {"n_samples": 8},
        "model": {"arch": "small_cnn", "training": TRAINING},
        "attacks": [{"attack": "fgsm", "norm": "linf", "eps": 0.1, "toolkit": "art", "options": {"batch_size": 0}}],
    }
    table = run_scenario(scenario, log=lambda _: None)
    client = MlflowClient(store)
    assert table.attrs["failed"]
    assert client.get_run(table.attrs["parent_run_id"]).info.status == "FAILED"
    assert client.get_run(table.iloc[0].run_id).info.status == "FAILED"


def test_scenario_tracking_uri_wins_over_the_environment(store, model_cache, tmp_path) -> None:
    own = tmp_path / "own" / "runs.db"
    scenario = {
        "name": "own-store",
        "data": {"n_samples": 8},
        "model": {"arch": "small_cnn", "training": TRAINING},
        "tracking": {"uri": f"sqlite:///{own}", "experiment": "elsewhere"},
        "attacks": [{"attack": "fgsm", "norm": "linf", "eps": 0.1, "toolkit": "torchattacks"}],
    }
    table = run_scenario(scenario, log=lambda _: None)
    assert table.attrs["tracking_uri"] == f"sqlite:///{own}"
    assert MlflowClient(f"sqlite:///{own}").get_experiment_by_name("elsewhere") is not None
    assert MlflowClient(store).get_experiment_by_name("elsewhere") is None
    beside = own.parent / "artifacts" / "elsewhere"  # another sqlite file: artifacts beside it
    assert len(list(beside.glob("*/artifacts/per_sample.csv"))) == 1
    assert len(list(beside.glob("*/artifacts/comparison/comparison.csv"))) == 1


def test_consensus_and_checks_on_the_parent(e2e) -> None:
    table, client, tmp = e2e
    parent_id = table.attrs["parent_run_id"]
    arts = _artifacts(client, parent_id)
    assert {
        "consensus/worst_case_per_attack.csv",
        "consensus/agreement.csv",
        "consensus/worst_case_by_eps.csv",
        "checks/checks.csv",
        "checks/checks.json",
    } <= arts
    fgsm = table[(table["attack"] == "fgsm") & (table["eps"] == 0.1)]
    assert fgsm["robust_accuracy_worst_case"].nunique() == 1
    assert fgsm["robust_accuracy_worst_case"].iloc[0] <= fgsm["robust_accuracy"].min()
    by_eps = pd.read_csv(client.download_artifacts(parent_id, "consensus/worst_case_by_eps.csv", str(tmp)))
    row = by_eps[(by_eps["norm"] == "linf") & (by_eps["eps"] == 0.1)].iloc[0]
    assert row["robust_accuracy_worst_case"] <= row["best_single_cell_robust_accuracy"]  # mean of min <= min of means
    agreement = pd.read_csv(client.download_artifacts(parent_id, "consensus/agreement.csv", str(tmp)))
    fgsm_pairs = agreement[agreement["attack"] == "fgsm"]
    assert len(fgsm_pairs) == 2 * 3 and (fgsm_pairs["agreement"] == 1.0).all()  # identical examples, full agreement
    checks = pd.read_csv(client.download_artifacts(parent_id, "checks/checks.csv", str(tmp)))
    status = dict(zip(checks["name"], checks["status"], strict=True))
    assert status["deterministic_attacks_agree"] == "passed" and status["monotone_in_eps"] == "passed"
    run = client.get_run(parent_id)
    assert run.data.tags["checks_failed"] == str((checks["status"] == "failed").sum())


def test_query_budget_is_enforced_by_the_bridge(digits_model, digits_batch) -> None:
    """A budget of 3 queries per sample stops a 10-step PGD after its third pass, whatever the toolkit."""
    from test_checks import outcomes

    x, y = digits_batch
    cell = {"attack": "pgd", "norm": "linf", "eps": 0.2, "steps": 10, "step_size": 0.04, "random_start": False}
    for toolkit in ("art", "foolbox", "torchattacks"):
        free, capped = outcomes(digits_model, x, y, [{**cell, "toolkit": toolkit},
                                                     {**cell, "toolkit": toolkit, "max_queries": 3}])  # fmt: skip
        assert free.row["queries_blocked"] == 0
        assert capped.row["queries_blocked"] > 0
        assert capped.row["queries_per_sample"] >= 10  # the toolkit kept asking; the answers were empty
        assert capped.row["robust_accuracy"] > free.row["robust_accuracy"]


def test_several_models_side_by_side(store, model_cache) -> None:
    scenario = {
        "name": "two-models",
        "data": {"n_samples": 12},
        "models": [
            {"arch": "small_cnn", "training": TRAINING},
            {"name": "lenet-quick", "arch": "lenet", "training": {**TRAINING, "epochs": 2}},
        ],
        "attacks": [{"attack": "fgsm", "norm": "linf", "eps": 0.1, "toolkit": ["art", "torchattacks"]}],
    }
    table = run_scenario(scenario, log=lambda _: None)
    assert sorted(table["model"].unique()) == ["lenet-quick", "small_cnn"] and len(table) == 4
    client = MlflowClient(store)
    names = {client.get_run(r).info.run_name for r in table["run_id"]}
    assert "art · fgsm-linf eps=0.1 · lenet-quick" in names
    parent = client.get_run(table.attrs["parent_run_id"])
    assert {"clean_accuracy.small_cnn", "clean_accuracy.lenet-quick", "loss.lenet-quick"} <= set(parent.data.metrics)
    arts = _artifacts(client, parent.info.run_id)
    assert {"model/lenet-quick/record.json", "model/small_cnn/record.json"} <= arts
    assert any(a.startswith("model/lenet-quick/") and a.endswith(".pt") for a in arts)  # trained here: weights
    checks = pd.DataFrame(table.attrs["checks"])
    assert set(checks["model"]) == {"small_cnn", "lenet-quick"} and len(checks) == 2 * 12
    # each model is judged on its own: same attack, its own clean accuracy and robust accuracy
    assert table.groupby("model")["clean_accuracy"].nunique().eq(1).all()


def test_missing_data_is_named_before_anything_runs(store, tmp_path) -> None:
    from bridge.scenario.load import ScenarioError

    scenario = {
        "name": "no-cifar",
        "data": {"dataset": "cifar10", "root": str(tmp_path / "cifar")},
        "attacks": [{"attack": "fgsm", "norm": "linf", "eps": 0.03, "toolkit": "torchattacks"}],
    }
    with pytest.raises(ScenarioError) as info:
        run_scenario(scenario, log=lambda _: None)
    message = str(info.value)
    assert "\n" not in message and "cifar-10-python.tar.gz" in message and str(tmp_path / "cifar") in message
    assert "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz" in message
    assert MlflowClient(store).get_experiment_by_name("no-cifar") is None  # nothing was written


def test_bf16_precision_runs_every_toolkit(store, model_cache) -> None:
    scenario = {
        "name": "bf16",
        "precision": "bf16",
        "data": {"n_samples": 16},
        "model": {"arch": "small_cnn", "training": TRAINING},
        "attacks": [
            {"attack": "pgd", "norm": "linf", "eps": 0.2, "steps": 5, "step_size": 0.05, "random_start": False}
        ],
    }
    table = run_scenario(scenario, log=lambda _: None)
    assert (table["status"] == "ok").all() and len(table) == 3
    assert (table["backward_calls"] > 0).all() and (table["robust_accuracy"] < table["clean_accuracy"]).all()
    parent = MlflowClient(store).get_run(table.attrs["parent_run_id"])
    assert parent.data.params["precision"] == "bf16" and parent.data.metrics["clean_accuracy"] > 0.75  # 13 of 16


def test_a_model_logged_to_mlflow_is_a_victim(store, model_cache, tmp_path) -> None:
    import mlflow.pytorch
    from torch import nn

    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    mlflow.set_tracking_uri(store)
    with mlflow.start_run(experiment_id=mlflow.create_experiment("registry")):
        info = mlflow.pytorch.log_model(net, name="victim", serialization_format="pickle", pip_requirements=["torch"])
    scenario = {
        "name": "from-mlflow",
        "data": {"n_samples": 8},
        "model": {"name": "linear", "mlflow": info.model_uri, "trust_pickle": True},  # a pickled module: trusted
        "attacks": [{"attack": "fgsm", "norm": "linf", "eps": 0.1, "toolkit": "torchattacks"}],
    }
    table = run_scenario(scenario, log=lambda _: None)
    assert table.iloc[0]["status"] == "ok" and table.iloc[0]["model"] == "linear"
    with torch.no_grad():
        from bridge.data.dataset import load_split, select

        data = select(load_split("digits", "test"), 8, seed=0)
        expected = (net(data.x).argmax(1) == data.y).float().mean().item()
    assert table.iloc[0]["clean_accuracy"] == pytest.approx(expected)  # the logged weights, not a new model
    bad = {**scenario, "model": {"mlflow": "models:/no-such-model/1"}}
    with pytest.raises(ValueError, match=r"mlflow model models:/no-such-model/1 could not be loaded"):
        run_scenario(bad, log=lambda _: None)
