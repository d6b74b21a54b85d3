"""Membership inference as a study kind: ART's attacks and the bridge's LiRA on a target trained on known members."""

from __future__ import annotations

from typing import Any

from bridge.engine.executors import Progress
from bridge.engine.recipe import Recipe
from bridge.engine.result import Result
from bridge.engine.task import Task
from bridge.studies.membership import config, plan
from bridge.studies.membership.aggregate import Summary, aggregate
from bridge.studies.membership.run import RUNNERS, attack_row, identity


class Membership:
    name = "membership"
    primary = "membership"
    fields = config.FIELDS

    def validate(self, scenario: Any) -> None:
        config.validate(scenario)

    def plan(self, scenario: Any, n_classes: int) -> Any:
        return scenario.membership

    def tasks(self, scenario: Any, section: Any, recipes: list[Recipe], n_samples: int) -> tuple[list[Task], dict]:
        return plan.tasks(scenario, recipes)

    def run(self, task: Task, inputs: dict[str, Result], progress: Progress) -> Result:
        return RUNNERS[task.kind](task, inputs, progress)

    def row(self, task: Task, status: str) -> dict[str, Any]:
        if task.kind == "attack":
            return attack_row(task, status)
        return {**identity(task), "role": task.params.get("role", "shadow"), "status": status}

    def child(self, task: Task, result: Result) -> tuple[dict[str, Any], dict[str, str]]:
        tags = dict(identity(task))
        params = dict(task.params["membership"])
        if task.kind == "attack":
            tags |= {"attack": task.params["label"], "evaluated_on": task.params["role"],
                     "toolkit": "bridge" if task.params["attack"]["attack"] == "lira" else "art"}  # fmt: skip
            params |= task.params["attack"]
        elif task.kind == "model":
            tags["role"] = task.params["role"]
        else:
            params |= {k: task.params[k] for k in ("variant", "count", "index")}
        return params, tags

    def aggregate(self, results: list[Result], meta: dict[str, Any]) -> Summary:
        return aggregate(results, meta)


MEMBERSHIP = Membership()
