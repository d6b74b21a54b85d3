"""Adversarial patches as a study kind: a universal patch per (model, toolkit), its success vs scale on held-out
images, on its own model, behind each preprocessing defence and on the study's other models."""

from __future__ import annotations

from typing import Any

import torch

from bridge.engine.executors import Progress
from bridge.engine.result import Result
from bridge.engine.task import Task
from bridge.engine.victim import victim
from bridge.studies.patch import config
from bridge.studies.patch import plan as planning
from bridge.studies.patch.aggregate import Summary, aggregate
from bridge.studies.patch.run import RUNNERS


class Patch:
    name = "patch"
    primary = "patch"
    fields = config.FIELDS

    def validate(self, scenario: Any) -> None:
        config.validate(scenario)

    def plan(self, scenario: Any, n_classes: int) -> dict:
        return planning.plan(scenario, n_classes)

    def tasks(self, scenario: Any, plan: dict, recipes: list, n_samples: int) -> tuple[list[Task], dict]:
        out, meta = planning.tasks(scenario, plan, recipes)
        return out, meta | {"bounds": list(scenario.data.bounds)}

    def run(self, task: Task, inputs: dict[str, Result], progress: Progress) -> Result:
        v = victim(task.recipe)
        result = RUNNERS[task.kind](task, v, inputs, progress)
        result.where |= {"device": str(v.model.device), "threads": str(torch.get_num_threads())}
        return result

    def row(self, task: Task, status: str) -> dict[str, Any]:
        return planning.base_row(task.recipe, task.params, status)

    def child(self, task: Task, result: Result) -> tuple[dict[str, Any], dict[str, str]]:
        params = task.params
        tags = {"model": task.recipe.name, "source": params["source"], "dataset": task.recipe.data["dataset"],
                "defence": task.recipe.defence_name, "toolkit": params["toolkit"], "shape": params["shape"],
                "target": str(params["target"])}  # fmt: skip
        if params["toolkit"] == "art":
            tags["native_class"] = params["native_class"]
            if task.kind == "train":
                tags["native_class_why"] = params["why"]
        logged = {k: v for k, v in params.items() if k not in ("source", "source_base", "why", "unsupported")}
        return logged, tags

    def aggregate(self, results: list[Result], meta: dict[str, Any]) -> Summary:
        return aggregate(results, meta)


PATCH = Patch()
