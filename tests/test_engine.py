"""The engine's parts on their own: results persisted losslessly, task keys that are stable and sensitive to what
defines the work, owners that are alive or not, and a store that ends the runs of dead drivers."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from bridge.engine import owner
from bridge.engine.recipe import Recipe
from bridge.engine.result import Result
from bridge.engine.store import HEARTBEAT, OWNER, Store
from bridge.engine.task import Task
from bridge.runner.resume import changes

RECIPE = Recipe(
    name="small_cnn", base="small_cnn", model={"arch": "small_cnn"}, defence="none", defence_name="none",
    data={"dataset": "digits", "n_samples": 40}, seed=0, device="auto", precision="fp32", batch_size=16,
    model_identity="abc", data_fingerprint="d1", train_fingerprint="t1",
)  # fmt: skip
SPEC = {"attack": "fgsm", "toolkit": "art", "norm": "linf", "eps": 0.1, "seed": 0, "batch_size": 16}


def task(**changes) -> Task:
    fields = {"study": "evasion", "kind": "attack", "recipe": RECIPE, "params": {"spec": SPEC}, "label": "fgsm",
              "toolkits": ("art",)}  # fmt: skip
    return Task(**{**fields, **changes})


def test_a_result_reads_back_exactly_as_it_was_written(tmp_path) -> None:
    per_sample = pd.DataFrame({"label": np.arange(5), "robust": [True, False, True, True, False],
                               "l2": [0.1, 1 / 3, np.inf, 0.0, 2.5e-8]})  # fmt: skip
    per_sample.index.name = "sample"
    x_adv = np.random.default_rng(0).random((5, 1, 8, 8), dtype=np.float32)
    result = Result("k", "attack", "fgsm", "ok", params={"spec": SPEC}, row={"eps": 0.1, "native_class": None},
                    metrics={"robust_accuracy": 0.6, "median_distance": float("inf"), "rate": float("nan")},
                    per_sample=per_sample, arrays={"x_adv": x_adv}, tables={"checks": [{"name": "a", "cells": ""}]},
                    started=1.5, ended=2.5, where={"host": "h"})  # fmt: skip
    result.save(tmp_path)
    back = Result.load(tmp_path, "run")
    pd.testing.assert_frame_equal(back.per_sample, per_sample)
    assert back.arrays["x_adv"].dtype == np.float32 and np.array_equal(back.arrays["x_adv"], x_adv)
    assert back.metrics["median_distance"] == float("inf") and np.isnan(back.metrics["rate"])
    assert (back.row, back.params, back.tables, back.started, back.run_id) == (
        result.row,
        result.params,
        result.tables,
        1.5,
        "run",
    )


def test_a_task_key_is_stable_and_names_everything_that_defines_the_work() -> None:
    key = task().key
    code = "from tests.test_engine import task; print(task().key)"
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert other == key  # the same in another process (a worker, a resumed study)
    assert task(label="renamed", units=9, keep=True, payload=object()).key == key  # what does not change a number
    assert task(params={"spec": {**SPEC, "eps": 0.2}}).key != key
    assert task(recipe=replace(RECIPE, data_fingerprint="d2")).key != key
    assert task(recipe=replace(RECIPE, model_identity="other weights")).key != key
    assert task(depends=("x",)).key != key
    assert set(task().versions) == {"advbridge", "torch", "art"} and task().versions["art"] == "1.20.1"


def test_an_owner_is_alive_while_its_process_runs() -> None:
    child = subprocess.Popen([sys.executable, "-c", "from bridge.engine import owner; print(owner.me(), flush=True);"
                              "import time; time.sleep(60)"], stdout=subprocess.PIPE, text=True)  # fmt: skip
    them = child.stdout.readline().strip()
    assert owner.alive(owner.me(), None) and owner.alive(them, None)
    child.kill()
    child.wait()
    assert not owner.alive(them, None)
    host, boot, pid, start = owner.me().split("|")
    assert not owner.alive(f"{host}|{boot}|{pid}|{int(start) + 1}", None)  # a reused pid is another process
    now = time.time()
    assert owner.alive("elsewhere|b|1|1", now - 30, now)  # another machine: its heartbeat decides
    assert not owner.alive("elsewhere|b|1|1", now - owner.STALE_S - 1, now)
    assert not owner.alive("elsewhere|b|1|1", None, now)


def test_the_store_ends_the_runs_of_dead_drivers_only(tmp_path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'mlflow.db'}", "reap")
    dead = store.create_parent("dead", {"scenario": "s"})
    child = store.client.create_run(store.experiment_id, tags={"mlflow.parentRunId": dead}).info.run_id
    host, boot, _, _ = owner.me().split("|")
    store.client.set_tag(dead, OWNER, f"{host}|{boot}|999999999|1")
    store.client.set_tag(dead, HEARTBEAT, "1700000000")
    alive = store.create_parent("alive", {"scenario": "s"})
    assert store.reap() == [dead]
    client = MlflowClient(store.uri)
    assert client.get_run(dead).info.status == "KILLED" and client.get_run(child).info.status == "KILLED"
    assert client.get_run(dead).info.end_time == 1700000000000  # its last sign of life
    assert client.get_run(alive).info.status == "RUNNING"


def test_a_new_store_created_by_many_processes_at_once_is_usable(tmp_path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    code = f"from bridge.engine.store import Store; s = Store({uri!r}, 'race'); print(s.create_parent('p', {{}}))"
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(4)]  # fmt: skip
    outs = [p.communicate() for p in procs]
    assert all(p.returncode == 0 for p in procs), [err for _, err in outs if err][-1:]
    runs = MlflowClient(uri).search_runs([MlflowClient(uri).get_experiment_by_name("race").experiment_id])
    assert len(runs) == 4


def test_changes_name_what_differs_between_two_plans() -> None:
    a, b, c = task(label="a"), task(label="b", params={"spec": {**SPEC, "eps": 0.2}}), task(label="c", kind="x")
    before = [a.describe(), {**b.describe(), "key": "old-b"}, {"key": "gone", "label": "d"}]
    text = changes(before, [a, b, c])
    assert text == "1 changed (b); 1 new (c); 1 no longer in the scenario (d)"
    assert changes([a.describe()], [a]) == ""
    assert json.dumps(a.describe())  # the plan is JSON


def test_owner_names_this_machine() -> None:
    assert owner.me().startswith(socket.gethostname() + "|") and f"|{os.getpid()}|" in owner.me()
    assert owner.describe(owner.me()) == f"pid {os.getpid()} on {socket.gethostname()}"


def test_the_heartbeat_beats_while_the_driver_writes(tmp_path) -> None:
    from bridge.engine.owner import Heartbeat

    store = Store(f"sqlite:///{tmp_path / 'mlflow.db'}", "beats")
    parent = store.create_parent("p", {})
    beats: list[float] = []

    def beat(now: float) -> None:
        store.beat(parent, now)
        beats.append(now)

    with Heartbeat(beat, every=0.05):
        for _ in range(10):  # the driver records results meanwhile, through the same client
            store.client.create_run(store.experiment_id, tags={"mlflow.parentRunId": parent})
            time.sleep(0.03)
    assert len(beats) >= 4
    assert float(store.get(parent).data.tags[HEARTBEAT]) == pytest.approx(beats[-1], abs=1)
