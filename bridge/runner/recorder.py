"""Writing finished results to the store on a writer thread, off the study's critical path.

Recording a child run (its tags, metrics, params and artifacts: several MLflow calls and files) took about 50 ms a
task in the quickstart, time in which no attack ran. Here the driver hands each result to one writer thread and
starts the next task at once. At most `depth` results wait to be written (the driver then waits: memory stays
bounded when tasks are shorter than their records), results are written in the order they finished, and leaving the
block waits until every one is written, also when the study stops on an exception or Ctrl-C: a finished task is
lost only if the process is killed outright, and then a resumed study runs it again (the store only ever holds
whole runs). A write that fails stops the study with its error at the next hand-over.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from types import TracebackType


class Recorder:
    """`submit(write)` runs `write()` on the writer thread; `with Recorder() as r:` waits for every write at exit."""

    def __init__(self, depth: int = 8):
        self.depth = depth
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="advbridge-recorder")
        self._pending: deque[Future[None]] = deque()

    def submit(self, write: Callable[[], None]) -> None:
        self._settle(lambda: len(self._pending) >= self.depth)
        self._pending.append(self._pool.submit(write))

    def flush(self) -> None:
        """Wait until every write handed over is done; raises the first one's error."""
        self._settle(lambda: bool(self._pending))

    def _settle(self, more: Callable[[], bool]) -> None:
        while self._pending and (self._pending[0].done() or more()):
            self._pending.popleft().result()

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        try:
            if kind is None:
                self.flush()
            else:  # the study is stopping: write what finished, and let its own error through
                for future in self._pending:
                    future.exception()
        finally:
            self._pool.shutdown(wait=True)
