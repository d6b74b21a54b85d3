"""Executors map tasks to results: `LocalExecutor` runs them in this process, `RayExecutor`
(bridge.engine.ray_executor) as Ray tasks with GPU requests, on one machine or many. The driver submits the tasks
whose inputs are ready and records each result as it arrives; `work` (the study kinds' dispatcher) does one task
and never raises."""

from __future__ import annotations

import os
import socket
from collections import deque
from collections.abc import Callable
from typing import Protocol

from bridge.engine.result import Result
from bridge.engine.task import Task

Progress = Callable[[int], None]  # called with the units of work just done
Work = Callable[[Task, dict[str, Result], Progress], Result]
OnProgress = Callable[[str, int], None]  # (task key, units done): 0 when the task starts


class Executor(Protocol):
    def submit(self, task: Task, inputs: dict[str, Result]) -> None: ...

    @property
    def busy(self) -> int: ...

    def next(self) -> Result: ...

    def close(self) -> None: ...


def where() -> dict[str, str]:
    """Where a task runs: host and process (a result records it)."""
    return {"host": socket.gethostname(), "pid": str(os.getpid())}


class LocalExecutor:
    """One task at a time in this process, in the order submitted; the driver's victims are reused."""

    name = "local"

    def __init__(self, work: Work, on_progress: OnProgress):
        self._work, self._on_progress = work, on_progress
        self._queue: deque[tuple[Task, dict[str, Result]]] = deque()

    def submit(self, task: Task, inputs: dict[str, Result]) -> None:
        self._queue.append((task, inputs))

    @property
    def busy(self) -> int:
        return len(self._queue)

    def next(self) -> Result:
        task, inputs = self._queue.popleft()
        self._on_progress(task.key, 0)  # it starts
        result = self._work(task, inputs, lambda units: self._on_progress(task.key, units))
        result.where = {**where(), "executor": self.name, **result.where}
        return result

    def close(self) -> None:
        self._queue.clear()
