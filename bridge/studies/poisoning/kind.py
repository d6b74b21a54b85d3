"""Backdoor poisoning as a study kind: every attack x fraction x target (x retraining) on every victim, with ART's
poisoning defences on each poisoned set."""

from __future__ import annotations

from typing import Any

import torch

from bridge.engine.executors import Progress
from bridge.engine.recipe import Recipe
from bridge.engine.result import Result
from bridge.engine.task import Task
from bridge.studies.poisoning import config
from bridge.studies.poisoning import plan as planning
from bridge.studies.poisoning.aggregate import Summary, aggregate
from bridge.studies.poisoning.run import RUNNERS


class Poisoning:
    name = "poisoning"
    primary = "poisoning"
    fields = config.FIELDS

    def validate(self, scenario: Any) -> None:
        config.validate(scenario)

    def plan(self, scenario: Any, n_classes: int) -> config.PoisoningConfig:
        return planning.plan(scenario, n_classes)

    def tasks(self, scenario: Any, cfg: Any, recipes: list[Recipe], n_samples: int) -> tuple[list[Task], dict]:
        return planning.tasks(scenario, cfg, recipes)

    def run(self, task: Task, inputs: dict[str, Result], progress: Progress) -> Result:
        result = RUNNERS[task.kind](task, inputs, progress)
        result.where |= {"threads": str(torch.get_num_threads())}
        return result

    def row(self, task: Task, status: str) -> dict[str, Any]:
        return planning.base_row(task.recipe, task.params, task.kind, status)

    def child(self, task: Task, result: Result) -> tuple[dict[str, Any], dict[str, str]]:
        p, recipe = task.params, task.recipe
        tags = {"model": recipe.name, "dataset": recipe.data["dataset"], "attack": p["label"], "task": task.kind,
                "target": str(p["target"]), "toolkit": "bridge" if task.kind == "reference" else "art"}  # fmt: skip
        logged = {**p["section"], **{f"attack.{k}": v for k, v in p["attack"].items()}, "target": p["target"]}
        for key in ("fraction", "retraining"):
            if key in p:
                tags[key], logged[key] = str(p[key]), p[key]
        if "defence" in p:
            tags["defence"] = p["defence"]["defence"]
            logged |= {f"defence.{k}": v for k, v in p["defence"].items()}
        return logged, tags

    def aggregate(self, results: list[Result], meta: dict[str, Any]) -> Summary:
        return aggregate(results, meta)


POISONING = Poisoning()
