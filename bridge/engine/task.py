"""A task: one piece of a study's work, with an identity.

A task is (study kind, task kind, recipe, params): the recipe says which victim, the params what to do to it
(an attack spec and its translation, a detector config, ...). Its `key` is a stable hash of all of that, of the
keys of the tasks whose results it needs, and of the versions of advbridge, torch and the toolkits it runs;
every child run carries it as a tag, so a resumed study knows what is already done. `payload` holds live objects
a worker needs that the params describe (an adapter's `Translation`); it is not part of the identity.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from bridge.core.identity import digest, version
from bridge.engine.recipe import Recipe
from bridge.engine.result import Result


@dataclass(frozen=True)
class Task:
    study: str  # the study kind that plans, runs and aggregates it (evasion, ...)
    kind: str  # what the work is within that study (attack, transfer, victim, detector, ...)
    recipe: Recipe
    params: dict[str, Any]  # JSON-able: what defines the work
    label: str  # the child run's name
    depends: tuple[str, ...] = ()  # keys of the tasks whose results it takes as inputs
    toolkits: tuple[str, ...] = ()  # the toolkits it runs (their versions are part of its key)
    units: int = 1  # progress units (an attack's batches)
    keep: bool = False  # whether its arrays (adversarial examples) are stored: a later task or check needs them
    payload: Any = field(default=None, compare=False, repr=False)

    @cached_property
    def versions(self) -> dict[str, str]:
        return {name: version(name) for name in ("advbridge", "torch", *self.toolkits)}

    @cached_property
    def key(self) -> str:
        return digest(
            {
                "study": self.study,
                "kind": self.kind,
                "recipe": self.recipe.key,
                "params": self.params,
                "depends": sorted(self.depends),
                "versions": self.versions,
            },
            32,
        )

    def result(self, status: str, **fields: Any) -> Result:
        """This task's result with `status` (ok, failed: .., unsupported: .., skipped: ..) and `fields`."""
        return Result(self.key, self.kind, self.label, status, params=self.params, **fields)

    def describe(self) -> dict[str, Any]:
        """What the study's plan records about the task (`study/plan.json` on the parent run)."""
        return {"key": self.key, "study": self.study, "kind": self.kind, "label": self.label,
                "model": self.recipe.name, "depends": list(self.depends)}  # fmt: skip
