"""The Ray executor: every task a Ray task with its GPU request, on a local instance or a cluster.

Without an address (the command line's, the scenario's `ray.address`, else $RAY_ADDRESS) it starts a local Ray
instance for the study and shuts it down after; an instance this process already started is used as it is.
Each task requests `gpus_per_cell` GPUs (default 1 where the cluster has GPUs, else 0; fractions let small
models share a GPU) and `cpus_per_cell` CPUs; Ray sets CUDA_VISIBLE_DEVICES, so `device: auto` means the GPU it
was given. A worker builds its victim from the recipe and the model cache (the driver trained every model first;
cache files missing on a worker's machine are sent through Ray's object store). Results come back as tasks finish;
a worker that dies is retried by Ray (`max_retries`), and a task that raises is a failed result, as locally.
"""

from __future__ import annotations

import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from bridge.core.errors import ScenarioError, one_line
from bridge.core.paths import write_whole
from bridge.engine.executors import OnProgress, Work, where
from bridge.engine.result import Result
from bridge.engine.task import Task

INSTALL_HINT = "pip install 'advbridge[ray]'"
MAX_RETRIES = 3  # of a task whose worker died
POLL_S = 0.2  # how often the driver looks at the progress queue while tasks run


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ScenarioError(f"executor ray needs Ray, which is not installed: {INSTALL_HINT}") from None
    return ray


def _run(work: Work, task: Task, inputs: dict[str, Result], queue: Any, context: dict[str, Any]) -> Result:
    """A task on a Ray worker: the driver's environment, its cache files where missing, then the work."""
    import ray
    import torch

    os.environ.update(context["env"])
    sys.path[:0] = [p for p in context["sys_path"] if p not in sys.path]
    torch.set_num_threads(context["threads"])
    for path, (ref, size) in context["weights"].items():
        if not Path(path).is_file() or Path(path).stat().st_size != size:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            write_whole(Path(path), lambda part, ref=ref: part.write_bytes(ray.get(ref)))
    queue.put_nowait((task.key, 0))  # it starts
    result = work(task, inputs, lambda units: queue.put_nowait((task.key, units)))
    gpus = ",".join(str(g) for g in ray.get_gpu_ids())
    result.where = {**where(), "executor": "ray", "node": ray.get_runtime_context().get_node_id()[:12],
                    "gpus": gpus or "none", **result.where}  # fmt: skip
    return result


class Connection:
    """This process's link to Ray: a local instance it started (shut down by `close`), or a cluster it joined,
    and the GPUs each task requests. Made before anything is written, so a wrong setting is a one-line error."""

    def __init__(self, settings: Any):
        ray = self.ray = import_ray()
        self._initialised = not ray.is_initialized()  # else an instance this process started is used as it is
        if self._initialised:
            address = settings.ray_address or os.environ.get("RAY_ADDRESS")
            if address:
                ray.init(address=address, log_to_driver=False)
            else:
                ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
        available = ray.cluster_resources().get("GPU", 0)
        self.gpus = settings.gpus_per_cell if settings.gpus_per_cell is not None else (1 if available else 0)
        self.cpus = settings.cpus_per_cell
        if self.gpus > available:
            self.close()
            raise ScenarioError(f"ray.gpus_per_cell: {self.gpus}, but the Ray cluster has {available:g} GPU(s)")

    def close(self) -> None:
        if self._initialised:
            self.ray.shutdown()
            self._initialised = False


class RayExecutor:
    name = "ray"

    def __init__(self, work: Work, on_progress: OnProgress, connection: Connection, context: dict[str, Any]):
        from ray.util.queue import Queue

        ray = self._ray = connection.ray
        self._work, self._on_progress = work, on_progress
        self._queue = Queue()
        weights = {path: (ray.put(Path(path).read_bytes()), Path(path).stat().st_size) for path in context["files"]}
        self._context = {
            "env": context["env"], "sys_path": context["sys_path"], "weights": weights,
            "threads": max(1, int(connection.cpus)),
        }  # fmt: skip
        options = {"num_gpus": connection.gpus, "num_cpus": connection.cpus, "max_retries": MAX_RETRIES}
        self._remote = ray.remote(_run).options(**options)
        self._running: dict[Any, tuple[Task, float]] = {}

    def submit(self, task: Task, inputs: dict[str, Result]) -> None:
        ref = self._remote.remote(self._work, task, inputs, self._queue, self._context)
        self._running[ref] = (task, time.time())

    @property
    def busy(self) -> int:
        return len(self._running)

    def next(self) -> Result:
        ray = self._ray
        while True:
            ready, _ = ray.wait(list(self._running), num_returns=1, timeout=POLL_S)
            self._drain()
            if ready:
                break
        task, submitted = self._running.pop(ready[0])
        try:
            result = ray.get(ready[0])
        except Exception as exc:  # the worker died more than MAX_RETRIES times, or Ray itself failed
            result = task.result(f"failed: {one_line(exc)}", error=traceback.format_exc(), started=submitted,
                                 ended=time.time(), where={"executor": "ray"})  # fmt: skip
        self._drain()
        return result

    def _drain(self) -> None:
        waiting = self._queue.qsize()
        for key, units in self._queue.get_nowait_batch(waiting) if waiting else []:
            self._on_progress(key, units)

    def close(self) -> None:
        """Cancel what still runs (the study stops: an error, Ctrl-C); the connection stays for its owner."""
        for ref in self._running:
            self._ray.cancel(ref, force=True)
        self._running.clear()
