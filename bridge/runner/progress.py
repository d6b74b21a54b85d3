"""The study's progress bar: tasks done, and the work inside them (an attack's batches) with an ETA."""

from __future__ import annotations

from typing import Any

from bridge.core.progress import progress_bar
from bridge.engine.result import Result
from bridge.engine.task import Task


class StudyProgress:
    """Two lines on stderr: tasks done of all, and units of work done (with the time remaining) and what runs."""

    def __init__(self, tasks: list[Task], enabled: bool):
        from rich.progress import MofNCompleteColumn

        self._units = {t.key: t.units for t in tasks}
        self._labels = {t.key: t.label for t in tasks}
        self._done = dict.fromkeys(self._units, 0)
        self._running: dict[str, str] = {}
        self._bar = progress_bar(MofNCompleteColumn(), enabled=enabled)
        self._tasks = self._bar.add_task("tasks", total=len(tasks))
        self._work = self._bar.add_task("work", total=sum(self._units.values()))

    def __enter__(self) -> StudyProgress:
        self._bar.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._bar.__exit__(*exc)

    def advance(self, key: str, units: int) -> None:
        """`units` of task `key` done (a batch of an attack; 0 when it starts); never past the task's own total."""
        self._running.setdefault(key, self._labels[key])
        step = min(units, self._units[key] - self._done[key])
        self._done[key] += step
        self._bar.advance(self._work, step)
        self._describe()

    def finish(self, task: Task, result: Result) -> None:
        step = self._units[task.key] - self._done[task.key]
        self._done[task.key] += step
        self._bar.advance(self._work, step)
        self._running.pop(task.key, None)
        self._bar.advance(self._tasks, 1)
        self._describe()

    def _describe(self) -> None:
        running = [f"{label} ({self._done[k]}/{self._units[k]})" for k, label in self._running.items()]
        more = f" +{len(running) - 2}" if len(running) > 2 else ""
        self._bar.update(self._work, description=f"{'; '.join(running[:2]) + more or 'work':<48}")
