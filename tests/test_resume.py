"""Work is never lost: a study killed with SIGKILL resumes without recomputing a finished task and ends with the
numbers of an uninterrupted run; a finished study re-aggregates from the store alone to the same numbers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from conftest import TRAINING, write_scenario
from mlflow.tracking import MlflowClient

from bridge.engine import tracking
from bridge.runner.aggregate import reaggregate
from bridge.runner.study import run_scenario
from bridge.scenario.load import ScenarioError

BIN = Path(sys.executable).parent / "advbridge"
TIMING = ["wall_time_s", "samples_per_s", "run_id"]  # the only columns two executions may differ in

SLOW_GRID = f"""
name: killed
seed: 3
batch_size: 30
data: {{n_samples: 60}}
model: {{arch: small_cnn, training: {json.dumps(TRAINING)}}}
attacks:
  - {{attack: pgd, norm: linf, eps: [0.05, 0.1, 0.15, 0.2], steps: 60, step_size: 0.01, random_start: true}}
  - {{attack: fgsm, norm: linf, eps: 0.1}}
"""


def children(client: MlflowClient, parent: str) -> list:
    exp = client.get_run(parent).info.experiment_id
    return client.search_runs([exp], f"tags.mlflow.parentRunId = '{parent}'", max_results=1000)


def parents(client: MlflowClient, name: str) -> list:
    exp = client.get_experiment_by_name(name).experiment_id
    return client.search_runs([exp], "tags.`advbridge.role` = 'study'")


def same_numbers(a: pd.DataFrame, b: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(a.drop(columns=TIMING).reset_index(drop=True),
                                  b.drop(columns=TIMING).reset_index(drop=True))  # fmt: skip
    assert a.attrs["checks"] == b.attrs["checks"]


@pytest.mark.slow  # about 30 s: a real study in a subprocess, killed, resumed in another, and run again here
def test_a_study_killed_halfway_resumes_to_the_numbers_of_an_uninterrupted_run(tmp_path, model_cache) -> None:
    uri = f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"
    scenario = write_scenario(tmp_path, SLOW_GRID)
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri}
    study = subprocess.Popen([str(BIN), "run", str(scenario), "--no-progress"], env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE)  # fmt: skip
    client, deadline, before = None, time.time() + 240, []
    while time.time() < deadline and study.poll() is None:
        time.sleep(0.05)
        if not (tmp_path / "store" / "mlflow.db").exists():
            continue
        try:
            client = client or tracking.client(uri)  # under the store's creation lock, as every process opens it
            (parent,) = parents(client, "killed")
            before = [c for c in children(client, parent.info.run_id) if c.info.status == "FINISHED"]
        except Exception:  # the store or the experiment is still being created
            continue
        if len(before) >= 5:  # the victim's probe and 4 cells: 11 of 16 tasks left
            study.send_signal(signal.SIGKILL)
            break
    assert study.wait(60) == -signal.SIGKILL, study.stderr.read().decode()[-3000:]
    parent_id = parent.info.run_id
    assert client.get_run(parent_id).info.status == "RUNNING"  # what MLflow leaves behind a killed process
    finished = {c.data.tags["advbridge.key"]: c.info.run_id for c in
                children(client, parent_id) if c.info.status == "FINISHED"}  # fmt: skip

    resumed = subprocess.run([str(BIN), "run", str(scenario), "--no-progress", "--resume"], env=env,
                             capture_output=True, text=True)  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    assert f"{len(finished)} finished tasks reused, {16 - len(finished)} to run" in resumed.stderr
    assert [p.info.run_id for p in parents(client, "killed")] == [parent_id]  # the same study, not a new one
    assert client.get_run(parent_id).info.status == "FINISHED"
    runs = children(client, parent_id)
    done = [c for c in runs if c.info.status == "FINISHED"]
    keys = [c.data.tags["advbridge.key"] for c in done]
    assert len(keys) == len(set(keys)) == 16  # every task finished exactly once
    for key, run_id in finished.items():  # (a) no finished task ran again: its child run is the one from before
        assert [c.info.run_id for c in done if c.data.tags["advbridge.key"] == key] == [run_id]

    resumed_table = reaggregate(uri, parent_id)[0]
    fresh = run_scenario(scenario, ["tracking.experiment=uninterrupted"], log=lambda _: None)
    assert fresh.attrs["ran"] == 16
    same_numbers(resumed_table, fresh)  # (b) every number equals an uninterrupted run's
    fresh_parent = client.get_run(fresh.attrs["parent_run_id"]).data
    resumed_parent = client.get_run(parent_id).data
    for name in ("clean_accuracy", "cells_ok", "checks_failed"):
        assert resumed_parent.metrics[name] == fresh_parent.metrics[name]


def test_a_finished_study_resumed_runs_nothing_and_reaggregates_to_the_same_numbers(store, model_cache) -> None:
    scenario = {
        "name": "again",
        "data": {"n_samples": 30},
        "model": {"arch": "small_cnn", "training": TRAINING},
        "defences": ["none", {"kind": "feature_squeezing", "bit_depth": 3, "gradient": "bpda"}],
        "transfer": True,
        "attacks": [{"attack": "pgd", "norm": "linf", "eps": 0.1, "steps": 5, "random_start": False},
                    {"attack": "deepfool", "norm": "l2", "steps": 5, "toolkit": ["art", "torchattacks"]}],
        "detector": {"attack": "pgd", "norm": "linf", "eps": 0.1, "train_toolkit": "art", "epochs": 2},
    }  # fmt: skip
    first = run_scenario(scenario, log=lambda _: None)
    assert first.attrs["reused"] == 0 and (first["evaluation"] == "transfer").sum() == 5
    again = run_scenario(scenario, log=lambda _: None, resume=first.attrs["parent_run_id"])
    assert again.attrs["parent_run_id"] == first.attrs["parent_run_id"]
    assert (again.attrs["ran"], again.attrs["reused"]) == (0, first.attrs["ran"])
    same_numbers(again, first)
    table = reaggregate(store, first.attrs["parent_run_id"])[0]
    same_numbers(table, first)
    assert (table["run_id"] == first["run_id"]).all()


def test_a_resumed_study_says_which_tasks_changed(store, model_cache) -> None:
    scenario = {
        "name": "changing",
        "data": {"n_samples": 20},
        "model": {"arch": "small_cnn", "training": TRAINING},
        "attacks": [{"attack": "pgd", "norm": "linf", "eps": [0.1, 0.2], "steps": 3, "toolkit": ["art", "foolbox"]}],
    }
    first = run_scenario(scenario, log=lambda _: None)
    parent = first.attrs["parent_run_id"]
    MlflowClient(store).set_terminated(parent, "KILLED")  # as a reaped study ends
    changed = {**scenario, "attacks": [{**scenario["attacks"][0], "eps": [0.1, 0.3]}]}
    with pytest.raises(ScenarioError, match=rf"no unfinished study of changing has this plan; the latest, {parent}, "
                                            r"differs: 2 new \(art · pgd-linf eps=0.3, foolbox · pgd-linf eps=0.3\); "
                                            r"2 no longer in the scenario \(art · pgd-linf eps=0.2"):  # fmt: skip
        run_scenario(changed, log=lambda _: None, resume=True)
    messages: list[str] = []
    again = run_scenario(changed, log=messages.append, resume=parent)
    assert any("the scenario changed since it started: 2 new" in m for m in messages), messages
    assert (again.attrs["reused"], again.attrs["ran"]) == (3, 2)  # the probe and the eps 0.1 cells are reused
    assert set(again["eps"]) == {0.1, 0.3} and again.attrs["parent_run_id"] == parent
    with pytest.raises(ScenarioError, match=r"--resume nope: no such run"):
        run_scenario(scenario, log=lambda _: None, resume="nope")
