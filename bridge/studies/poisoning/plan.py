"""The poisoning study planned: per victim, attack and target, the clean model's `reference` (fraction 0, the ASR's
base rate); per fraction, one `craft` task (the poisoned samples), one `train` task per retraining (the victim
retrained on the poisoned set), and per defence one `detect` task (activation, spectral: flagged samples removed,
victim retrained), `strip` task (run-time detection) or `cleanse` task (Neural Cleanse, Keras models only: on a
PyTorch model it is a row saying why it cannot run)."""

from __future__ import annotations

from typing import Any

from bridge.core.errors import ScenarioError
from bridge.engine.recipe import NONE, Recipe
from bridge.engine.task import Task
from bridge.models.config import ModelConfig
from bridge.studies.poisoning.config import (
    PoisoningConfig,
    Section,
    attack_unsupported,
    neural_cleanse_unsupported,
    unsupported,
)

STUDY = "poisoning"
KINDS = {"activation": "detect", "spectral": "detect", "strip": "strip", "neural_cleanse": "cleanse"}


def plan(scenario: Any, n_classes: int) -> PoisoningConfig:
    cfg: PoisoningConfig = scenario.poisoning
    if bad := [t for t in cfg.targets if t >= n_classes]:
        raise ScenarioError(f"poisoning.targets: {bad[0]} is not a class of {scenario.data.dataset} "
                            f"(0..{n_classes - 1})")  # fmt: skip
    return cfg


def base_row(recipe: Recipe, params: dict[str, Any], task: str, status: str) -> dict[str, Any]:
    """A row's identity columns."""
    defence = params.get("defence", {}).get("defence", NONE)
    toolkit = "bridge" if task in ("reference", "strip") else "art"  # STRIP is the bridge's own (see strip.py)
    return {"model": recipe.name, "defence": defence, "dataset": recipe.data["dataset"], "attack": params["label"],
            "toolkit": toolkit, "task": task, "target": params["target"], "fraction": params.get("fraction", 0.0),
            "retraining": params.get("retraining", 0), "status": status}  # fmt: skip


def tasks(scenario: Any, cfg: PoisoningConfig, recipes: list[Recipe]) -> tuple[list[Task], dict]:
    """The tasks, and the meta the aggregation needs: the table's rows in order (a task's key, or the row of what
    cannot run)."""
    section = cfg.model_dump(mode="json", include=set(Section.model_fields))
    section["seed"] = scenario.seed if cfg.seed is None else cfg.seed
    suffix = " | {}" if len(recipes) > 1 else ""
    out: list[Task] = []
    rows: list[dict[str, Any]] = []
    for recipe in recipes:
        where = suffix.format(recipe.name)
        model = ModelConfig.model_validate(recipe.model)
        why = unsupported(model)
        if why is None and recipe.defence != NONE:
            why = "the poisoning study retrains the undefended model; its defences are the section's `defences`"
        cleanse = neural_cleanse_unsupported(model)
        for entry in cfg.attacks:
            for target in cfg.targets:
                common = {"section": section, "attack": entry.model_dump(mode="json"), "label": entry.label,
                          "target": target}  # fmt: skip
                if (refused := why or attack_unsupported(model, entry)) is not None:
                    rows.append({"row": base_row(recipe, common, "reference", f"unsupported: {refused}")})
                    continue
                ref = Task(STUDY, "reference", recipe, common, f"poisoning {entry.label} clean t={target}{where}")
                out.append(ref)
                rows.append({"task": ref.key})
                for fraction in entry.fractions or cfg.fractions:
                    at = {**common, "fraction": fraction}
                    name = f"{entry.label} t={target} f={fraction:g}{where}"
                    craft = Task(STUDY, "craft", recipe, at, f"poisoning craft {name}", toolkits=("art",), keep=True)
                    out.append(craft)
                    rows.append({"task": craft.key})
                    needs = (craft.key, ref.key)
                    for r in range(entry.retrainings):
                        train = Task(STUDY, "train", recipe, {**at, "retraining": r},
                                     f"poisoning train {name} r={r}", depends=needs, toolkits=("art",))  # fmt: skip
                        out.append(train)
                        rows.append({"task": train.key})
                    for defence in cfg.defences:
                        params = {**at, "defence": defence.model_dump(mode="json")}
                        kind = KINDS[defence.defence]
                        if kind == "cleanse" and cleanse is not None:
                            rows.append({"row": base_row(recipe, params, kind, f"unsupported: {cleanse}")})
                            continue
                        task = Task(STUDY, kind, recipe, params, f"poisoning {defence.defence} {name}", depends=needs,
                                    toolkits=("art",))  # fmt: skip
                        out.append(task)
                        rows.append({"task": task.key})
    meta = {"scenario": scenario.name, "rows": rows, "attacks": [a.label for a in cfg.attacks],
            "fractions": cfg.fractions, "targets": cfg.targets, "max_accuracy_drop": cfg.max_accuracy_drop,
            "asr_tolerance": cfg.asr_tolerance}  # fmt: skip
    return out, meta
