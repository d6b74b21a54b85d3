"""Model extraction as a study kind: every attack x budget on every (model, defence), with a true-label baseline."""

from __future__ import annotations

from typing import Any

import torch

from bridge.engine.executors import Progress
from bridge.engine.result import Result
from bridge.engine.task import Task
from bridge.engine.victim import victim
from bridge.models.config import ModelConfig
from bridge.studies.extraction import config
from bridge.studies.extraction import plan as planning
from bridge.studies.extraction.aggregate import Summary, aggregate
from bridge.studies.extraction.checks import BASELINE
from bridge.studies.extraction.run import RUNNERS


class Extraction:
    name = "extraction"
    primary = "extraction"
    fields = config.FIELDS

    def validate(self, scenario: Any) -> None:
        config.validate(scenario)

    def plan(self, scenario: Any, n_classes: int) -> dict:
        return planning.plan(scenario)

    def tasks(self, scenario: Any, plan: dict, recipes: list, n_samples: int) -> tuple[list[Task], dict]:
        return planning.tasks(scenario, plan, recipes)

    def run(self, task: Task, inputs: dict[str, Result], progress: Progress) -> Result:
        v = victim(task.recipe)
        result = RUNNERS[task.kind](task, v, inputs, progress)
        result.where |= {"device": str(v.model.device), "threads": str(torch.get_num_threads())}
        return result

    def row(self, task: Task, status: str) -> dict[str, Any]:
        params = task.params
        attack = params["label"] if task.kind == "extract" else BASELINE
        native = params["call"]["native_class"] if task.kind == "extract" else None
        return planning.base_row(task.recipe, attack, params["budget"], status, native)

    def child(self, task: Task, result: Result) -> tuple[dict[str, Any], dict[str, str]]:
        recipe, params = task.recipe, task.params
        thief = ModelConfig.model_validate(params["thief"])
        tags = {"model": recipe.name, "dataset": recipe.data["dataset"], "defence": recipe.defence_name,
                "attack": params.get("label", BASELINE), "budget": str(params["budget"])}  # fmt: skip
        logged = {"budget": params["budget"], "thief_arch": thief.arch, "seed": params["seed"]}
        if task.kind == "extract":
            tags |= {"toolkit": "art", "native_class": params["call"]["native_class"]}
            logged |= params["call"]["kwargs"]
        return logged, tags

    def aggregate(self, results: list[Result], meta: dict[str, Any]) -> Summary:
        return aggregate(results, meta)


EXTRACTION = Extraction()
