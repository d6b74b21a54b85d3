"""The membership study's tasks: per (model, defence), the target and the control, LiRA's shadow models (one set
per variant and count, shared by the target and the control), and every attack on each of them."""

from __future__ import annotations

from typing import Any

from bridge.core.schema import Strict
from bridge.defences.grid import NONE, parse_entry
from bridge.engine.recipe import Recipe
from bridge.engine.task import Task
from bridge.models.config import ModelConfig
from bridge.studies.membership.config import Members, pdtp_unsupported, target_model, unsupported
from bridge.studies.membership.run import attack_label

STUDY = "membership"


def labels(entries: list[Strict]) -> list[str]:
    """Each attack's name, numbered where two entries would share one."""
    names = [attack_label(e) for e in entries]
    return [f"{n}_{i}" if names.count(n) > 1 else n for i, n in enumerate(names)]


def tasks(scenario: Any, recipes: list[Recipe]) -> tuple[list[Task], dict]:
    """The tasks, and the meta the aggregation needs: the table's rows in order (a task's key, or the row of an
    attack that cannot run on a victim)."""
    cfg = scenario.membership
    common = cfg.model_dump(mode="json", include=set(Members.model_fields))
    roles = ["target", "control"] if cfg.control else ["target"]
    names = labels(cfg.attacks)
    out: list[Task] = []
    rows: list[dict[str, Any]] = []
    for recipe in recipes:
        defence = NONE if recipe.defence == NONE else parse_entry(recipe.defence)
        model = ModelConfig.model_validate(recipe.model)
        if why := unsupported(model, defence):
            rows += [_unsupported(recipe, name, role, why) for name in names for role in roles]
            continue
        models = {role: Task(STUDY, "model", recipe, {"membership": common, "role": role},
                             f"membership {role} | {recipe.name}", keep=True) for role in roles}  # fmt: skip
        out += models.values()
        shadows: dict[tuple[str, int], list[Task]] = {}
        for entry in cfg.attacks:
            key = (entry.variant, entry.shadow_models) if entry.attack == "lira" else None
            if key is not None and key not in shadows:
                shadows[key] = [_shadow(recipe, common, *key, i) for i in range(key[1])]
                out += shadows[key]
        training = target_model(model, defence, cfg.target_training).training
        for entry, name in zip(cfg.attacks, names, strict=True):
            if entry.attack == "pdtp" and (why := pdtp_unsupported(training)):
                rows += [_unsupported(recipe, name, role, why) for role in roles]
                continue
            for role in roles:
                needs = [models[role]]
                if entry.attack == "lira":
                    needs += shadows[entry.variant, entry.shadow_models]
                params = {"membership": common, "attack": entry.model_dump(mode="json"), "role": role, "label": name}
                toolkits = () if entry.attack == "lira" else ("art",)
                task = Task(STUDY, "attack", recipe, params, f"{name} on {role} | {recipe.name}",
                            depends=tuple(t.key for t in needs), toolkits=toolkits)  # fmt: skip
                out.append(task)
                rows.append({"task": task.key})
    return out, {"rows": rows, "scenario": scenario.name, "control": cfg.control}


def _unsupported(recipe: Recipe, attack: str, role: str, why: str) -> dict[str, Any]:
    """The row of an attack that cannot run on a victim, and why."""
    return {"row": {"model": recipe.name, "defence": recipe.defence_name, "dataset": recipe.data["dataset"],
                    "attack": attack, "evaluated_on": role, "status": f"unsupported: {why}"}}  # fmt: skip


def _shadow(recipe: Recipe, common: dict[str, Any], variant: str, count: int, index: int) -> Task:
    params = {"membership": common, "variant": variant, "count": count, "index": index}
    label = f"lira {variant} shadow {index + 1}/{count} | {recipe.name}"
    return Task(STUDY, "shadow", recipe, params, label, keep=True)
