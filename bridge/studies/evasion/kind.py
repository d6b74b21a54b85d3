"""The evasion grid as a study kind: attacks x toolkits x budgets on every (model, defence)."""

from __future__ import annotations

from typing import Any

import torch

from bridge.attacks.spec import AttackSpec
from bridge.engine.executors import Progress
from bridge.engine.result import Result
from bridge.engine.task import Task
from bridge.engine.victim import victim
from bridge.studies.evasion import config
from bridge.studies.evasion import plan as planning
from bridge.studies.evasion.aggregate import Summary, aggregate
from bridge.studies.evasion.run import RUNNERS

CELLS = ("attack", "transfer", "surrogate")  # the task kinds that are a row of the comparison table


class Evasion:
    name = "evasion"
    primary = "attacks"
    fields = config.FIELDS

    def validate(self, scenario: Any) -> None:
        config.validate(scenario)

    def plan(self, scenario: Any, n_classes: int) -> list[planning.Cell]:
        return planning.plan_cells(scenario, n_classes)

    def tasks(
        self, scenario: Any, cells: list[planning.Cell], recipes: list, n_samples: int
    ) -> tuple[list[Task], dict]:
        return planning.tasks(scenario, cells, recipes, n_samples)

    def run(self, task: Task, inputs: dict[str, Result], progress: Progress) -> Result:
        v = victim(task.recipe)
        result = RUNNERS[task.kind](task, v, inputs, progress)
        # CPU float reductions depend on the thread count: a borderline attack can differ between thread counts
        result.where |= {"device": str(v.model.device), "threads": str(torch.get_num_threads())}
        return result

    def row(self, task: Task, status: str) -> dict[str, Any]:
        if task.kind in CELLS:
            spec = AttackSpec.model_validate(task.params["spec"])
            native = task.params.get("translation", {}).get("native_class")
            row = planning.base_row(spec, native, task.recipe, status)
            return row if task.kind == "attack" else {**row, "evaluation": "transfer", "source": task.params["from"]}
        return {"model": task.recipe.name, "defence": task.recipe.defence_name, "status": status}

    def child(self, task: Task, result: Result) -> tuple[dict[str, Any], dict[str, str]]:
        recipe = task.recipe
        tags = {"model": recipe.name, "dataset": recipe.data["dataset"], "defence": recipe.defence_name}
        if task.kind not in CELLS:
            return {}, tags
        spec = AttackSpec.model_validate(task.params["spec"])
        tags |= {"toolkit": spec.toolkit, "attack": spec.attack, "norm": spec.norm,
                 "eps": "none" if spec.eps is None else f"{spec.eps:g}", "targeted": spec.targeted,
                 "evaluation": "direct" if task.kind == "attack" else "transfer"}  # fmt: skip
        params = spec.params()
        if "batch_size" in result.row:  # the batch its attack ran in: `auto` is resolved where the cell runs
            params["batch_size"] = result.row["batch_size"]
        if task.kind != "transfer":  # the cell's own attack ran (on the victim, or on its stolen copy)
            translation = task.params["translation"]
            params["native_class"] = tags["native_class"] = translation["native_class"]
            if translation["notes"]:  # the cell's own differences in meaning, also as the run's description
                tags["notes"] = tags["mlflow.note.content"] = translation["notes"]
            if translation["defaults"] == "toolkit":
                tags["defaults"] = "toolkit"
            if task.params.get("origin", "scenario") != "scenario":
                tags["added_by"] = task.params["origin"]
        if task.kind != "attack":
            tags["transferred_from"] = task.params["from"]
        return params, tags

    def aggregate(self, results: list[Result], meta: dict[str, Any]) -> Summary:
        return aggregate(results, meta)


EVASION = Evasion()
