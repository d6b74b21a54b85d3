"""Model inversion as a study kind: one MIFace task per (model, defence), the classes of the `inversion` section."""

from __future__ import annotations

from typing import Any

from bridge.core.errors import ScenarioError
from bridge.engine.executors import Progress
from bridge.engine.recipe import Recipe
from bridge.engine.result import Result
from bridge.engine.task import Task
from bridge.studies.inversion import config
from bridge.studies.inversion.aggregate import Summary, aggregate
from bridge.studies.inversion.run import RUNNERS

STUDY = "inversion"


class Inversion:
    name = STUDY
    primary = "inversion"
    fields = config.FIELDS

    def validate(self, scenario: Any) -> None:
        config.validate(scenario)

    def plan(self, scenario: Any, n_classes: int) -> list[int]:
        """The classes to reconstruct (ScenarioError: one line for a class the data does not have)."""
        classes = scenario.inversion.classes
        if classes == "all":
            return list(range(n_classes))
        wrong = [c for c in classes if not 0 <= c < n_classes]
        if wrong:
            raise ScenarioError(f"inversion.classes: {wrong} not in 0..{n_classes - 1} (the data has {n_classes})")
        return list(classes)

    def tasks(self, scenario: Any, classes: list[int], recipes: list[Recipe], n_samples: int) -> tuple[list, dict]:
        cfg = scenario.inversion  # every setting written out; the evaluator as written (its config validates again)
        settings = cfg.model_dump(mode="json", exclude={"evaluator"})
        settings["evaluator"] = cfg.evaluator.model_dump(mode="json", exclude_unset=True)
        params = {"inversion": settings, "classes": classes}
        out = [Task(STUDY, "invert", r, params, f"art · miface · {r.name}", toolkits=("art",)) for r in recipes]
        return out, {}

    def run(self, task: Task, inputs: dict[str, Result], progress: Progress) -> Result:
        return RUNNERS[task.kind](task, inputs, progress)

    def row(self, task: Task, status: str) -> dict[str, Any]:
        return {"model": task.recipe.name, "defence": task.recipe.defence_name, "attack": "miface", "toolkit": "art",
                "native_class": "MIFace", "status": status, "classes": len(task.params["classes"])}  # fmt: skip

    def child(self, task: Task, result: Result) -> tuple[dict[str, Any], dict[str, str]]:
        cfg = task.params["inversion"]
        params = {k: v for k, v in cfg.items() if k != "evaluator"} | {"evaluator": cfg["evaluator"].get("arch")}
        tags = {"model": task.recipe.name, "defence": task.recipe.defence_name, "attack": "miface", "toolkit": "art",
                "native_class": "MIFace", "dataset": task.recipe.data["dataset"]}  # fmt: skip
        return params, tags

    def aggregate(self, results: list[Result], meta: dict[str, Any]) -> Summary:
        return aggregate(results, meta)


INVERSION = Inversion()
