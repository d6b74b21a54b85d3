"""The study kinds advbridge knows, and the one function an executor runs: a task to its result, never raising."""

from __future__ import annotations

import time
import traceback

from bridge.core.errors import one_line
from bridge.engine.executors import Progress
from bridge.engine.result import Result
from bridge.engine.task import Task
from bridge.studies.base import StudyKind
from bridge.studies.evasion.kind import EVASION
from bridge.studies.extraction.kind import EXTRACTION
from bridge.studies.inversion.kind import INVERSION
from bridge.studies.membership.kind import MEMBERSHIP
from bridge.studies.patch.kind import PATCH
from bridge.studies.poisoning.kind import POISONING

KINDS: dict[str, StudyKind] = {
    kind.name: kind for kind in (EVASION, EXTRACTION, MEMBERSHIP, INVERSION, POISONING, PATCH)
}


def run_task(task: Task, inputs: dict[str, Result], progress: Progress) -> Result:
    """`task` done by its kind; an exception becomes a failed result with its traceback, as a cell's error."""
    kind = KINDS[task.study]
    started = time.time()
    try:
        result = kind.run(task, inputs, progress)
    except Exception as exc:
        result = task.result(f"failed: {one_line(exc)}", error=traceback.format_exc())
    result.started = result.started or started
    result.ended = result.ended or time.time()
    if not result.row:
        result.row = kind.row(task, result.status)
    return result
