"""Many writers: builders of one model train it once across processes and threads (the others wait and load
it); 16 studies started at once against a new store all land in it, with the model trained once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
from conftest import write_scenario
from test_models import TINY, synthetic

from bridge.core.identity import file_sha256
from bridge.engine import tracking
from bridge.models import build as build_module
from bridge.models.build import build_model
from bridge.models.config import ModelConfig

BIN = Path(sys.executable).parent / "advbridge"


def training_lines(lines: list[str]) -> list[str]:
    return [line for line in lines if line.startswith("training ")]


def test_builders_of_one_key_train_it_once_the_others_wait_and_load(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("ADVBRIDGE_CACHE", str(tmp_path))
    train = build_module.train

    def slow_train(*args, **kwargs):
        time.sleep(1.0)  # long enough for every builder to find the key missing while the first trains it
        return train(*args, **kwargs)

    monkeypatch.setattr(build_module, "train", slow_train)
    data, logs, built = synthetic(), [], []
    start = threading.Barrier(4)

    def builder() -> None:
        start.wait()
        net, record = build_model(ModelConfig(**TINY), data, log=logs.append)
        built.append((net(data.x), record))

    threads = [threading.Thread(target=builder) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    records = [record for _, record in built]
    assert len(records) == 4 and sorted(r["trained"] for r in records) == [False, False, False, True]
    waiting = f"waiting for another process to train lenet-{records[0]['hash']}.pt"
    assert len(training_lines(logs)) == 1 and set(logs) - set(training_lines(logs)) <= {waiting}
    assert {r["sha256"] for r in records} == {file_sha256(Path(records[0]["checkpoint"]))}
    assert all(torch.equal(out, built[0][0]) for out, _ in built)


# --- 16 studies at once on a new store ---------------------------------------------------------------------------

CROWD = """
name: crowd
data: {dataset: digits, n_samples: 10}
model: {arch: lenet, training: {epochs: 1, lr: 0.01}}
attacks:
  - {attack: fgsm, norm: linf, eps: 0.1, toolkit: foolbox}
"""


@pytest.mark.slow  # about 70 s on 2 cores: 17 processes, each importing torch and MLflow (7 s of CPU)
def test_sixteen_studies_started_at_once_on_a_new_store_all_land(tmp_path: Path) -> None:
    scenario = write_scenario(tmp_path, CROWD)
    uri = f"sqlite:///{tmp_path / 'new' / 'mlflow.db'}"
    env = {**os.environ, "ADVBRIDGE_CACHE": str(tmp_path / "cache"), "MLFLOW_TRACKING_URI": uri}
    logs = [tmp_path / f"run{i}.err" for i in range(17)]

    def start(log: Path) -> subprocess.Popen:
        with log.open("w") as err:
            return subprocess.Popen([str(BIN), "run", str(scenario), "--no-progress"], env=env,
                                    stdout=subprocess.DEVNULL, stderr=err)  # fmt: skip

    crowd = [start(log) for log in logs[:16]]
    try:
        codes = [p.wait(300) for p in crowd]
    finally:
        for p in crowd:
            p.kill()  # only those still running: a hung study must not outlive the test
    errors = [log.read_text() for log in logs[:16]]
    assert codes == [0] * 16, "\n".join(e[-2000:] for e, code in zip(errors, codes, strict=True) if code)
    assert sum(len(training_lines(e.splitlines())) for e in errors) == 1

    (weights,) = (tmp_path / "cache" / "models").glob("*.pt")
    assert sorted(p.name for p in weights.parent.iterdir()) == [weights.name, weights.name + ".lock"]
    sha = file_sha256(weights)
    client = tracking.client(uri)
    exp = client.get_experiment_by_name("crowd").experiment_id
    parents = client.search_runs([exp], "tags.`advbridge.role` = 'study'")
    assert len(parents) == 16 and {p.info.status for p in parents} == {"FINISHED"}
    logged = []
    for parent in parents:
        run_id = parent.info.run_id
        children = client.search_runs([exp], f"tags.mlflow.parentRunId = '{run_id}'")
        assert len(children) == int(parent.data.params["tasks"]) and {c.info.status for c in children} == {"FINISHED"}
        record = json.loads(Path(client.download_artifacts(run_id, "model/lenet/record.json", tmp_path / run_id))
                            .read_text())  # fmt: skip
        assert record["sha256"] == parent.data.params["model.lenet.sha256"] == sha
        if record["trained"]:
            logged.append(client.download_artifacts(run_id, f"model/lenet/{weights.name}", tmp_path / run_id))
    assert len(logged) == 1 and file_sha256(Path(logged[0])) == sha

    later = start(logs[16])
    assert later.wait(120) == 0, logs[16].read_text()[-2000:]
    assert not training_lines(logs[16].read_text().splitlines())
    assert len(client.search_runs([exp], "tags.`advbridge.role` = 'study'")) == 17
