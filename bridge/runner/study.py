"""One execution of a study, from a validated plan to a parent run that ends FINISHED (or FAILED, or KILLED).

1. Recipes for every (model, defence), tasks from every study kind in the scenario, each with its key.
2. The parent run: a new one, or (`resume`) an unfinished one whose finished tasks are reused, not recomputed.
   Parents left RUNNING by a dead driver are ended KILLED first.
3. The driver builds every victim a pending task needs (training zoo models once, here), then an executor runs the
   tasks whose inputs are ready; each result is handed to a writer thread (`recorder`) the moment it arrives and
   recorded as a child run while the next task runs.
4. Every kind aggregates from the results (reused ones as read back from the store): tables, plots, checks.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from bridge.core.identity import digest
from bridge.engine.executors import Executor, LocalExecutor
from bridge.engine.owner import Heartbeat
from bridge.engine.result import Result
from bridge.engine.store import EXAMPLES, Store
from bridge.engine.task import Task
from bridge.engine.victim import Victim, forget, victim
from bridge.runner import inputs, resume
from bridge.runner.aggregate import every_cell_failed, study_checks, study_table, write_report
from bridge.runner.preflight import Inputs, preflight
from bridge.runner.progress import StudyProgress
from bridge.runner.recorder import Recorder
from bridge.scenario.load import Plan, load, load_raw
from bridge.studies.registry import KINDS, run_task


@dataclass(frozen=True)
class Execution:
    """Where the tasks run: the scenario's `executor` and `ray` settings, overridden from the command line."""

    executor: str = "local"
    ray_address: str | None = None
    gpus_per_cell: float | None = None
    cpus_per_cell: float = 1.0

    @classmethod
    def of(cls, scenario: Any, executor: str | None = None, ray_address: str | None = None) -> Execution:
        ray = scenario.ray
        return cls(executor or scenario.executor, ray_address or ray.address, ray.gpus_per_cell, ray.cpus_per_cell)


class Study:
    def __init__(self, plan: Plan, execution: Execution, progress: bool = False, log: Callable[[str], None] = print):
        self.plan, self.execution, self.progress, self.log = plan, execution, progress, log
        self.connection: Any = None  # to Ray, for executor ray

    def run(self, resume_from: bool | str | None = None) -> pd.DataFrame:
        """The study's comparison table (see `run_scenario`)."""
        prepared = preflight(self.plan, self.log)  # a problem here is one line, before anything is written
        if self.execution.executor == "ray":  # Ray missing, or too few GPUs: one line, before anything is written
            from bridge.engine.ray_executor import Connection

            self.connection = Connection(self.execution)
        try:
            return self._run(prepared, resume_from)
        finally:
            if self.connection is not None:
                self.connection.close()

    def _run(self, prepared: Inputs, resume_from: bool | str | None) -> pd.DataFrame:
        scn = self.plan.scenario
        uri, evaluation, recipes = prepared.uri, prepared.evaluation, prepared.recipes
        tasks: list[Task] = []
        metas: dict[str, Any] = {}
        for kind in scn.kinds:
            mine, metas[kind.name] = kind.tasks(scn, self.plan.studies[kind.name], recipes, len(evaluation))
            tasks += mine
        store = Store(uri, scn.tracking.experiment or scn.name)
        for run_id in store.reap():
            self.log(f"study {run_id} was left RUNNING by a driver that is gone: ended as KILLED")
        parent_id, new = self._parent(store, resume_from, tasks, recipes, evaluation.name, len(evaluation))
        with Heartbeat(lambda now: store.beat(parent_id, now)):
            try:
                reused, fresh = self._results(store, parent_id, new, tasks, metas, inputs.params(
                    self.plan, recipes, len(evaluation), len(tasks)))  # fmt: skip
                summaries = self._aggregate(store, parent_id, tasks, metas, {**reused, **fresh})
                write_report(store, parent_id, summaries, [*reused.values(), *fresh.values()])
            except KeyboardInterrupt:
                store.end(parent_id, "KILLED")
                raise
            except BaseException:
                store.end(parent_id, "FAILED")
                raise
            table = study_table(summaries)
            failed = every_cell_failed(table)
            store.end(parent_id, "FAILED" if failed else "FINISHED")
        table.attrs.update(
            tracking_uri=uri,
            experiment_id=store.experiment_id,
            parent_run_id=parent_id,
            failed=failed,
            n_samples=len(evaluation),
            # records, not a DataFrame: pandas compares attrs in concat
            checks=study_checks(summaries).to_dict("records"),
            reused=len(reused),
            ran=len(fresh),
        )
        return table

    def _parent(
        self, store: Store, resume_from: bool | str | None, tasks: list[Task], recipes: list, dataset: str, n: int
    ) -> tuple[str, bool]:
        """The parent run's id, and whether it is new (named for the scenario, its sample count and its start, so
        that two executions of one scenario are told apart in the run list)."""
        scn = self.plan.scenario
        identity = digest(sorted(t.key for t in tasks), 32)
        parent, changed = resume.choose(store, scn.name, resume_from, identity, tasks) if resume_from else (None, "")
        if parent is None:
            if resume_from:
                self.log(f"--resume: no unfinished study of {scn.name} in {store.uri}; starting a new one")
            tags = {"scenario": scn.name, "dataset": dataset, "models": ", ".join(r.name for r in recipes),
                    resume.STUDY: identity}  # fmt: skip
            name = f"{scn.name} · {n} samples · {time.strftime('%Y-%m-%d %H:%M')}"
            return store.create_parent(name, tags), True
        parent_id = parent.info.run_id
        store.take_over(parent_id)
        store.client.set_tag(parent_id, resume.STUDY, identity)
        if changed:
            self.log(f"resuming {parent_id}; the scenario changed since it started: {changed}")
        return parent_id, False

    def _results(
        self, store: Store, parent_id: str, new: bool, tasks: list[Task], metas: dict, params: dict
    ) -> tuple[dict[str, Result], dict[str, Result]]:
        """(reused, fresh): the results of the tasks a resumed study had finished, read back from the store, and
        of the others, run now."""
        done = {} if new else store.finished(parent_id)
        reused = {
            t.key: store.load(done[t.key])
            for t in tasks
            if t.key in done and (not t.keep or done[t.key].data.tags.get(EXAMPLES) == "stored")
        }
        pending = [t for t in tasks if t.key not in reused]
        if reused:
            self.log(f"resuming {parent_id}: {len(reused)} finished tasks reused, {len(pending)} to run")
        store.write(parent_id, inputs.plan_record(self.plan, tasks, metas))
        kept = store.log_params(parent_id, params)
        if kept:
            self.log(f"parent params kept from the first execution: {', '.join(kept)}")
        victims = self._prepare(store, parent_id, pending)
        return reused, self._execute(store, parent_id, pending, reused, victims)

    def _prepare(self, store: Store, parent_id: str, pending: list[Task]) -> list[Victim]:
        """Build (training where needed) every victim a pending task needs, and record each on the parent."""
        recorded = store.get(parent_id).data.params
        victims = []
        for recipe in {t.recipe.key: t.recipe for t in pending}.values():
            v = victim(recipe, train_missing=True, progress=self.progress, log=self.log)
            victims.append(v)
            if f"model.{recipe.name}.sha256" not in recorded:
                store.write(parent_id, inputs.victim_record(v))
                store.log_params(parent_id, inputs.victim_params(v))
                inputs.log_curves(store, parent_id, v)
        if self.connection is not None:
            forget()  # the workers build their own victims; the driver's would only hold memory (and GPUs)
        return victims

    def _execute(
        self, store: Store, parent_id: str, pending: list[Task], reused: dict[str, Result], victims: list[Victim]
    ) -> dict[str, Result]:
        """Run `pending` as their inputs become ready; record each result the moment it arrives."""
        results: dict[str, Result] = {}
        waiting = list(pending)
        by_key = {t.key: t for t in pending}
        with StudyProgress(pending, self.progress) as bar, Recorder() as recorder:
            executor = self._executor(bar, _context(store.uri, victims))
            try:
                while True:
                    for task in [t for t in waiting if all(d in results or d in reused for d in t.depends)]:
                        waiting.remove(task)
                        executor.submit(task, {d: results.get(d) or reused[d] for d in task.depends})
                    if not executor.busy:
                        break
                    result = executor.next()
                    task = by_key[result.key]
                    recorder.submit(self._record(store, parent_id, task, result))
                    results[result.key] = result
                    bar.finish(task, result)
            finally:
                executor.close()
        assert not waiting, f"tasks whose inputs never came: {[t.label for t in waiting]}"
        return results

    def _executor(self, bar: StudyProgress, context: dict[str, Any]) -> Executor:
        if self.connection is None:
            return LocalExecutor(run_task, bar.advance)
        from bridge.engine.ray_executor import RayExecutor

        return RayExecutor(run_task, bar.advance, self.connection, context)

    def _record(self, store: Store, parent_id: str, task: Task, result: Result) -> Callable[[], None]:
        """A line for what did not run, now; and what writes `result` as a child run of the study (a skipped task
        leaves none), for the writer thread."""
        kind = KINDS[task.study]
        if not result.row:  # a worker that died returns no row
            result.row = kind.row(task, result.status)
        if result.state in ("failed", "unsupported"):
            self.log(f"{result.state}: {task.label}: {result.status.split(': ', 1)[-1]}")
        tags = {"scenario": self.plan.scenario.name}

        def write() -> None:
            if result.state != "skipped":
                params, own = kind.child(task, result)
                result.run_id = store.record(parent_id, task, result, params, {**own, **tags})
            result.files = {}  # recorded; the images need not stay in memory

        return write

    def _aggregate(
        self, store: Store, parent_id: str, tasks: list[Task], metas: dict[str, Any], results: dict[str, Result]
    ) -> dict[str, Any]:
        """Each kind's tables, plots and checks from its results, written to the parent; by kind."""
        summaries = {}
        for name, meta in metas.items():
            mine = [results[t.key] for t in tasks if t.study == name and t.key in results]
            summaries[name] = KINDS[name].aggregate(mine, meta)
            store.write(parent_id, summaries[name].record)
        return summaries


def _context(uri: str, victims: list[Victim]) -> dict[str, Any]:
    """What a worker elsewhere needs from the driver: the model cache and store it uses, its import path, and the
    cache files of the models it trained (sent to workers that lack them)."""
    from bridge.models.build import cache_dir

    cache = cache_dir()
    files = sorted({v.record["checkpoint"] for v in victims if v.record.get("checkpoint")
                    and Path(v.record["checkpoint"]).parent == cache})  # fmt: skip
    env = {"ADVBRIDGE_CACHE": str(cache.parent), "MLFLOW_TRACKING_URI": uri}
    path = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    return {"env": env, "sys_path": path, "files": files}


def run_scenario(
    scenario: str | Path | dict[str, Any],
    overrides: list[str] | None = None,
    *,
    progress: bool = False,
    log: Callable[[str], None] = print,
    resume: bool | str | None = None,
    executor: str | None = None,
    ray_address: str | None = None,
) -> pd.DataFrame:
    """Validate and run a scenario (a YAML path or the same structure as a dict); returns the comparison table.

    `resume`: True continues the latest unfinished study of the scenario with the same plan, a run id that study.
    `executor`: local (default) or ray (`ray_address`: a cluster; default $RAY_ADDRESS, else a local instance).
    The table's `attrs` hold `tracking_uri`, `experiment_id`, `parent_run_id`, `failed`, `n_samples`, `checks`
    (the sanity checks as records: `pd.DataFrame(table.attrs["checks"])`), `reused` and `ran` (task counts).
    """
    plan = load_raw(scenario, overrides) if isinstance(scenario, dict) else load(scenario, overrides)
    return Study(plan, Execution.of(plan.scenario, executor, ray_address), progress, log).run(resume)
