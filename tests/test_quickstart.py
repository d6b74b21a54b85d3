"""The quickstart end to end, as `make demo` runs it: first-time training, every cell, the MLflow record."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient
from test_run import METRICS

pytestmark = pytest.mark.slow


def test_quickstart_covers_three_toolkits_and_five_attacks(tmp_path) -> None:
    uri = f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "ADVBRIDGE_CACHE": str(tmp_path / "cache")}
    advbridge = Path(sys.executable).parent / "advbridge"
    out = subprocess.run([str(advbridge), "run", "scenarios/quickstart.yaml", "--no-progress"], env=env,
                         capture_output=True, text=True)  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "training small_cnn" in out.stderr  # a fresh cache: the first run trains
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("quickstart").experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert all(c.info.status == "FINISHED" for c in children)
    assert [c.data.tags["advbridge.kind"] for c in children].count("evasion.victim") == 1
    children = [c for c in children if c.data.tags["advbridge.kind"] == "evasion.attack"]
    assert len(children) == 33
    assert {c.data.tags["toolkit"] for c in children} == {"art", "foolbox", "torchattacks"}
    assert {c.data.tags["attack"] for c in children} == {"fgsm", "pgd", "cw", "deepfool"}
    assert {(c.data.tags["attack"], c.data.tags["norm"]) for c in children} >= {("pgd", "linf"), ("pgd", "l2")}
    for child in children:
        assert METRICS <= set(child.data.metrics)
        assert child.data.metrics["budget_violations"] == 0
    assert parents[0].data.metrics["clean_accuracy"] > 0.9
    by_cell: dict[tuple, dict[str, float]] = {}
    for c in children:
        key = (c.data.tags["attack"], c.data.tags["norm"], c.data.tags["eps"])
        by_cell.setdefault(key, {})[c.data.tags["toolkit"]] = c.data.metrics["robust_accuracy"]
    # deterministic attacks: one number whichever toolkit ran them
    for key, accs in by_cell.items():
        if key[0] in ("fgsm", "pgd"):
            assert len(set(accs.values())) == 1, (key, accs)
    # and a documented difference in meaning shows: torchattacks' DeepFool stops on the boundary
    deepfool = by_cell[("deepfool", "l2", "none")]
    assert deepfool["torchattacks"] > deepfool["foolbox"] + 0.2

    # The same quickstart as Ray tasks on a local Ray instance the run starts and stops: the same numbers per cell,
    # given the same CPU threads per cell as the local run (float sums depend on the thread count, and torchattacks'
    # DeepFool, which stops on the decision boundary, turns such differences into different results).
    threads = f"ray.cpus_per_cell={torch.get_num_threads()}"
    out = subprocess.run([str(advbridge), "run", "scenarios/quickstart.yaml", "--no-progress", "--executor", "ray",
                          "--set", threads, "--set", "tracking.experiment=quickstart-ray"], env=env,
                         capture_output=True, text=True)  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "training" not in out.stderr  # the driver found the model in the cache; workers never train
    remote = client.search_runs([client.get_experiment_by_name("quickstart-ray").experiment_id],
                                "tags.`advbridge.kind` = 'evasion.attack'")  # fmt: skip
    assert {c.data.tags["advbridge.where.executor"] for c in remote} == {"ray"}
    numbers = ("robust_accuracy", "attack_success_rate", "l2_mean", "linf_max", "forward_calls", "backward_calls")

    def cells(found: list) -> dict:
        return {c.data.tags["advbridge.key"]: [c.data.metrics.get(m) for m in numbers] for c in found}

    assert cells(remote) == cells(children)  # the same keys (the same cells) with the same numbers
