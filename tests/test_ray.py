"""The Ray executor on a real local Ray instance (no mocks): the same numbers as in-process, cells scheduled with
their GPU requests (logical GPUs on this CPU machine), cache files sent to workers that lack them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from conftest import TRAINING, write_scenario
from mlflow.tracking import MlflowClient

from bridge.runner.study import run_scenario
from bridge.scenario.load import ScenarioError

ray = pytest.importorskip("ray")
TIMING = ["wall_time_s", "samples_per_s", "run_id"]

SCENARIO = {
    "name": "on-ray",
    "data": {"n_samples": 24},
    "batch_size": 12,
    "model": {"arch": "small_cnn", "training": TRAINING},
    "defences": ["none", {"kind": "feature_squeezing", "bit_depth": 3, "gradient": "bpda"}],
    "transfer": True,
    "attacks": [
        {"attack": "fgsm", "norm": "linf", "eps": 0.1},
        {"attack": "pgd", "norm": "linf", "eps": 0.1, "steps": 5, "random_start": True},
        {"attack": "deepfool", "norm": "l2", "steps": 10, "toolkit": "torchattacks"},  # sensitive to float order
    ],
}


@pytest.fixture(scope="module")
def cluster(model_cache):
    """One local Ray instance with two logical GPUs, as `ray.init(num_gpus=2)` makes on a CPU-only machine."""
    ray.init(num_cpus=2, num_gpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def children(uri: str, parent: str) -> list:
    client = MlflowClient(uri)
    exp = client.get_run(parent).info.experiment_id
    return client.search_runs([exp], f"tags.mlflow.parentRunId = '{parent}'")


def test_the_same_scenario_gives_the_same_numbers_through_local_and_ray(cluster, store) -> None:
    local = run_scenario(SCENARIO, log=lambda _: None)
    # As many threads per cell as the local run uses: CPU float sums depend on the thread count, and torchattacks'
    # DeepFool, which stops on the decision boundary, turns such differences into different results.
    threads = {"ray": {"cpus_per_cell": torch.get_num_threads(), "gpus_per_cell": 0}}
    remote = run_scenario({**SCENARIO, **threads, "name": "on-ray-2"}, log=lambda _: None, executor="ray")
    assert len(local) == len(remote) == 2 * 7 + 7 and (local["status"] == "ok").all()  # 7 cells, 7 transfers
    pd.testing.assert_frame_equal(local.drop(columns=TIMING), remote.drop(columns=TIMING))
    assert local.attrs["checks"] == remote.attrs["checks"]
    runs = children(store, remote.attrs["parent_run_id"])
    assert {r.data.tags["advbridge.where.executor"] for r in runs} == {"ray"}
    assert {r.data.tags["advbridge.where.pid"] for r in runs} != {str(os.getpid())}  # not this process
    transfer = [r for r in runs if r.data.tags["advbridge.kind"] == "evasion.transfer"]
    assert len(transfer) == 7 and all(r.info.status == "FINISHED" for r in transfer)  # dependents ran after sources


def test_cells_are_scheduled_with_their_gpu_requests(cluster, store) -> None:
    scenario = {**SCENARIO, "defences": ["none"], "transfer": False}
    one = run_scenario({**scenario, "ray": {"gpus_per_cell": 1}}, log=lambda _: None, executor="ray")
    runs = children(store, one.attrs["parent_run_id"])
    assert len(runs) == 1 + 7
    assert {r.data.tags["advbridge.where.gpus"] for r in runs} <= {"0", "1"}  # one of the two, given by Ray
    half = run_scenario({**scenario, "name": "half", "ray": {"gpus_per_cell": 0.5}}, log=lambda _: None,
                        executor="ray")  # fmt: skip
    assert all(r.data.tags["advbridge.where.gpus"] in ("0", "1") for r in children(store, half.attrs["parent_run_id"]))
    pd.testing.assert_frame_equal(one.drop(columns=TIMING), half.drop(columns=TIMING))
    with pytest.raises(ScenarioError, match=r"ray.gpus_per_cell: 3.0, but the Ray cluster has 2 GPU\(s\)"):
        run_scenario({**scenario, "ray": {"gpus_per_cell": 3}}, log=lambda _: None, executor="ray")


def test_a_worker_without_the_models_gets_them_from_the_driver(cluster, tmp_path) -> None:
    """Cache files a worker's machine lacks come through Ray's object store (a cluster without shared disks)."""
    from test_engine import RECIPE

    from bridge.engine.ray_executor import _run
    from bridge.engine.task import Task

    target = tmp_path / "elsewhere" / "small_cnn-x.pt"
    context = {"env": {}, "sys_path": [], "threads": 1, "weights": {str(target): (ray.put(b"weights"), 7)}}

    def work(task, inputs, progress):
        return task.result("ok", row={"read": Path(target).read_bytes().decode()})

    class Queue:
        def put_nowait(self, item): ...

    task = Task("evasion", "check", RECIPE, {}, "reads the weights")
    out = ray.get(ray.remote(_run).remote(work, task, {}, Queue(), context))
    assert out.row["read"] == "weights" and out.where["executor"] == "ray" and target.read_bytes() == b"weights"


def test_without_ray_the_executor_is_a_one_line_error(tmp_path) -> None:
    scenario = write_scenario(tmp_path, "name: no-ray\nattacks: [{attack: fgsm, norm: linf, eps: 0.1}]\n")
    db = tmp_path / "store" / "mlflow.db"
    code = ("import sys; sys.modules['ray'] = None; from bridge.cli import main; "
            f"sys.exit(main(['run', {str(scenario)!r}, '--executor', 'ray']))")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{db}"})  # fmt: skip
    assert out.returncode == 2 and out.stderr.strip().count("\n") == 0
    assert out.stderr.startswith("advbridge: error: executor ray needs Ray") and "advbridge[ray]" in out.stderr
    assert not db.exists()


def test_a_task_whose_worker_dies_is_retried_by_ray(cluster, tmp_path) -> None:
    from test_engine import RECIPE

    from bridge.engine.ray_executor import Connection, RayExecutor
    from bridge.engine.task import Task
    from bridge.runner.study import Execution

    def dies_once(task, inputs, progress):  # defined here: Ray ships it by value to its workers
        """Kills its worker process the first time (a crashed worker, an OOM kill), then does its work."""
        marker = Path(task.params["marker"])
        if not marker.exists():
            marker.write_text("died once")
            os._exit(1)
        progress(1)
        return task.result("ok", row={"attempt": 2})

    connection = Connection(Execution("ray", gpus_per_cell=0))
    seen: list[tuple[str, int]] = []
    executor = RayExecutor(dies_once, lambda key, units: seen.append((key, units)), connection,
                           {"env": {}, "sys_path": [], "files": []})  # fmt: skip
    task = Task("evasion", "check", RECIPE, {"marker": str(tmp_path / "marker")}, "dies once")
    executor.submit(task, {})
    result = executor.next()
    assert result.ok and result.row == {"attempt": 2} and result.where["executor"] == "ray"
    assert (task.key, 1) in seen  # its progress reached the driver
    connection.close()  # joined, not started, by this connection: Ray stays up for the other tests
    assert ray.is_initialized()
