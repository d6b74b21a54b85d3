"""What a study kind is: its scenario keys, how it plans its tasks, runs one, and aggregates the results.

The evasion grid is the first kind; model extraction, membership inference, poisoning and patches are each a new
module with its config section, registered in `bridge.studies.registry`. The engine knows nothing of kinds: the
driver asks each kind present in a scenario for its tasks, the executor runs them through `registry.run_task`,
the store persists each result, and the kind aggregates what was persisted.
"""

from __future__ import annotations

from typing import Any, Protocol

from bridge.engine.executors import Progress
from bridge.engine.recipe import Recipe
from bridge.engine.result import Result
from bridge.engine.task import Task


class StudyKind(Protocol):
    name: str  # e.g. evasion
    primary: str  # the scenario key whose presence asks for this kind, e.g. attacks
    fields: dict[str, tuple[Any, Any]]  # the scenario keys it adds: name -> (annotation, default or Field)

    def validate(self, scenario: Any) -> None:
        """Checks across keys once the scenario parsed (ValueError: one line)."""

    def plan(self, scenario: Any, n_classes: int) -> Any:
        """What the kind will do, resolved without data or models (ScenarioError: one line); `tasks` turns it into
        tasks once the victims are known."""

    def tasks(self, scenario: Any, plan: Any, recipes: list[Recipe], n_samples: int) -> tuple[list[Task], dict]:
        """The tasks, and the JSON meta `aggregate` needs besides their results."""

    def run(self, task: Task, inputs: dict[str, Result], progress: Progress) -> Result:
        """Do one task (in any process); it may raise: the dispatcher turns that into a failed result."""

    def row(self, task: Task, status: str) -> dict[str, Any]:
        """The task's row in the kind's tables when it produced none itself (it failed)."""

    def child(self, task: Task, result: Result) -> tuple[dict[str, Any], dict[str, str]]:
        """The params and tags of the task's child run."""

    def aggregate(self, results: list[Result], meta: dict[str, Any]) -> Any:
        """Tables, plots and checks from persisted results alone: an object with `table`, `checks` and `record`
        (a `bridge.engine.result.Aggregate` for the parent run)."""
