"""The study's record in MLflow: one parent run per study, one child run per finished task, read back by key.

Only the driver writes. A child run is created when its task has finished, with the task's own start and end
times (so MLflow's Duration is the work's), its key, kind and status as tags, its metrics and params, and its
result (`result.json`, `result.npz`) beside human-readable artifacts. `finished` tells a resumed study which keys
are done; `load` reads a result back exactly as it was computed.
"""

from __future__ import annotations

import math
import posixpath
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bridge.engine import owner, tracking
from bridge.engine.result import Aggregate, Result
from bridge.engine.task import Task

ROLE, KEY, KIND, STATUS, OWNER, HEARTBEAT = (
    "advbridge.role", "advbridge.key", "advbridge.kind", "status", "advbridge.owner", "advbridge.heartbeat",
)  # fmt: skip
EXAMPLES = "advbridge.examples"  # "stored" when a child's result holds its arrays
MLFLOW_STATUS = {"ok": "FINISHED", "unsupported": "FINISHED", "failed": "FAILED"}
BATCH = 100  # params + tags per request (MLflow's limit)


TAG_LIMIT = 8000  # characters: MLflow refuses a longer tag value (a long description is one)


def _fit(value: str) -> str:
    """`value` within MLflow's tag limit: a longer one is cut, saying so (the whole text is an artifact)."""
    cut = "\n\n… cut to MLflow's limit on a tag; the whole text is in the run's artifacts"
    return value if len(value) <= TAG_LIMIT else value[: TAG_LIMIT - len(cut)] + cut


def _ms(seconds: float) -> int:
    return int(seconds * 1000)


class Store:
    """One experiment of one tracking store, through an explicit client (no global MLflow state)."""

    def __init__(self, uri: str, experiment: str):
        self.uri = uri
        self.experiment_id = tracking.setup(uri, experiment)
        self.client = tracking.client(uri)

    # --- parents -------------------------------------------------------------------------------------------------

    def create_parent(self, name: str, tags: dict[str, str]) -> str:
        run = self.client.create_run(self.experiment_id, run_name=name, tags={ROLE: "study", OWNER: owner.me(), **tags})
        return run.info.run_id

    def take_over(self, run_id: str) -> None:
        """Make this process the owner of a (dead or finished) parent and set it RUNNING again."""
        self.client.set_tag(run_id, OWNER, owner.me())
        self.client.update_run(run_id, status="RUNNING")

    def studies(self, scenario: str) -> list[Any]:
        """The parent runs of `scenario` in this experiment, newest first."""
        filter_string = f"tags.`{ROLE}` = 'study' and tags.scenario = '{scenario}'"
        return list(self._search(filter_string, ["attributes.start_time DESC"]))

    def get(self, run_id: str) -> Any:
        return self.client.get_run(run_id)

    def beat(self, run_id: str, now: float) -> None:
        self.client.set_tag(run_id, HEARTBEAT, f"{now:.0f}")

    def end(self, run_id: str, status: str) -> None:
        self.client.set_terminated(run_id, status)

    def reap(self) -> list[str]:
        """End every RUNNING parent of this experiment whose owner is gone (and its RUNNING children) as KILLED;
        returns their ids. A study never stays RUNNING after its driver died."""
        reaped = []
        for run in self._search(f"tags.`{ROLE}` = 'study' and attributes.status = 'RUNNING'"):
            if is_alive(run):
                continue
            for child in self._search(
                f"tags.mlflow.parentRunId = '{run.info.run_id}' and attributes.status = 'RUNNING'"
            ):
                self.client.set_terminated(child.info.run_id, "KILLED")
            self.client.set_tag(
                run.info.run_id, "advbridge.ended", f"no live owner; found by {owner.describe(owner.me())}"
            )
            self.client.set_terminated(run.info.run_id, "KILLED", end_time=_last_sign_of_life(run))
            reaped.append(run.info.run_id)
        return reaped

    # --- children ------------------------------------------------------------------------------------------------

    def children(self, parent_id: str) -> list[Any]:
        return list(self._search(f"tags.mlflow.parentRunId = '{parent_id}'", ["attributes.start_time ASC"]))

    def finished(self, parent_id: str, statuses: tuple[str, ...] = ("FINISHED",)) -> dict[str, Any]:
        """The latest child run of each task key under `parent_id` whose status is one of `statuses`: FINISHED, the
        tasks a resumed study reuses; with FAILED too, every task's last recorded result (what re-aggregation
        reads, so a failed cell keeps its row)."""
        done: dict[str, Any] = {}
        for run in self.children(parent_id):
            key = run.data.tags.get(KEY)
            if key and run.info.status in statuses:
                done[key] = run
        return done

    def record(self, parent_id: str, task: Task, result: Result, params: dict[str, Any], tags: dict[str, str]) -> str:
        """A child run for `result` under `parent_id`, with the work's own start and end times; returns its id."""
        from mlflow.entities import Metric, Param

        all_tags = {
            "mlflow.parentRunId": parent_id, KEY: task.key, KIND: f"{task.study}.{task.kind}", STATUS: result.state,
            EXAMPLES: "stored" if result.arrays else "none", **tags,
            **{f"advbridge.where.{k}": str(v) for k, v in result.where.items()},
        }  # fmt: skip
        if result.state in ("failed", "unsupported"):
            all_tags["error" if result.state == "failed" else "reason"] = result.status.split(": ", 1)[-1][:5000]
        finite = {k: float(v) for k, v in result.metrics.items() if math.isfinite(v)}
        # MLflow stores inf as 1.8e308 and NaN as nothing readable: the value is a tag, the metric left out
        all_tags |= {f"metric.{k}": str(float(v)) for k, v in result.metrics.items() if k not in finite}
        start = result.started or time.time()
        all_tags = {k: _fit(str(v)) for k, v in all_tags.items()}
        run = self.client.create_run(self.experiment_id, start_time=_ms(start), tags=all_tags, run_name=task.label)
        run_id = run.info.run_id
        now = _ms(time.time())
        metrics = [Metric(k, v, now, 0) for k, v in finite.items()]
        entries = [Param(k, str(v)) for k, v in params.items()]
        for i in range(0, max(len(entries), len(metrics)), BATCH):
            self.client.log_batch(run_id, metrics=metrics[i : i + BATCH], params=entries[i : i + BATCH])
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            result.save(folder)
            if result.per_sample is not None:
                result.per_sample.to_csv(folder / "per_sample.csv")
            if result.error:
                (folder / "error.txt").write_text(result.error)
            _write_files(folder, result.files)
            self.client.log_artifacts(run_id, tmp)
        end = result.ended or time.time()
        self.client.set_terminated(run_id, MLFLOW_STATUS.get(result.state, "FINISHED"), end_time=_ms(end))
        return run_id

    def load(self, run: Any) -> Result:
        """The result recorded in child run `run`, read back from its artifacts."""
        with tempfile.TemporaryDirectory() as tmp:
            for name in ("result.json", "result.npz"):
                try:
                    self.client.download_artifacts(run.info.run_id, name, tmp)
                except Exception:  # result.npz is absent when there was nothing to store
                    if name == "result.json":
                        raise
            return Result.load(Path(tmp), run.info.run_id)

    # --- the parent's own record ---------------------------------------------------------------------------------

    def write(self, run_id: str, record: Aggregate) -> None:
        """Files, tables, metrics and tags on the parent run (files and tables replace those of an earlier pass)."""
        from mlflow.entities import Metric, RunTag

        # MLflow's log_table appends to a table the run has: one already there is rewritten in log_table's format
        folders = {posixpath.dirname(name) or None for name in record.tables}
        there = {a.path for folder in folders for a in self.client.list_artifacts(run_id, folder)}
        files = dict(record.files)
        for name, table in record.tables.items():
            if name in there:
                files[name] = table.to_json(orient="split", index=False, date_format="iso")
            else:
                self.client.log_table(run_id, table, name)
        with tempfile.TemporaryDirectory() as tmp:
            _write_files(Path(tmp), files)
            self.client.log_artifacts(run_id, tmp)
        now = _ms(time.time())
        metrics = [Metric(k, float(v), now, 0) for k, v in record.metrics.items()]
        tags = [RunTag(k, _fit(str(v))) for k, v in record.tags.items()]
        for i in range(0, max(len(metrics), len(tags)), BATCH):
            self.client.log_batch(run_id, metrics=metrics[i : i + BATCH], tags=tags[i : i + BATCH])

    def log_params(self, run_id: str, params: dict[str, Any]) -> dict[str, tuple[str, str]]:
        """Log the params the run does not have yet; returns those it has with another value ({name: (old, new)})."""
        from mlflow.entities import Param

        have = self.client.get_run(run_id).data.params
        new = [Param(k, str(v)) for k, v in params.items() if k not in have]
        for i in range(0, len(new), BATCH):
            self.client.log_batch(run_id, params=new[i : i + BATCH])
        return {k: (have[k], str(v)) for k, v in params.items() if k in have and have[k] != str(v)}

    def _search(self, filter_string: str, order_by: list[str] | None = None) -> Iterator[Any]:
        token = None
        while True:
            page = self.client.search_runs([self.experiment_id], filter_string, max_results=1000, order_by=order_by,
                                           page_token=token)  # fmt: skip
            yield from page
            token = page.token
            if not token:
                return


def _write_files(folder: Path, files: dict[str, str | bytes]) -> None:
    for name, content in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, str):
            path.write_text(content)
        else:
            path.write_bytes(content)


def is_alive(run: Any) -> bool:
    """Whether a RUNNING parent still has a live driver."""
    tags = run.data.tags
    beat = tags.get(HEARTBEAT)
    return owner.alive(tags.get(OWNER, ""), float(beat) if beat else None)


def _last_sign_of_life(run: Any) -> int:
    beat = run.data.tags.get(HEARTBEAT)
    return _ms(float(beat)) if beat else run.info.start_time
