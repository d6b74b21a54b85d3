"""The extraction study planned: per victim, one `extract` task per attack and budget, and one `baseline` task per
budget (the thief architecture trained on as many true labels)."""

from __future__ import annotations

from typing import Any

from bridge.core.errors import ScenarioError
from bridge.engine.batch import fixed
from bridge.engine.recipe import Recipe
from bridge.engine.task import Task
from bridge.studies.extraction.checks import BASELINE
from bridge.studies.extraction.config import ExtractionConfig

STUDY = "extraction"


def native_calls(cfg: ExtractionConfig, query_batch: int) -> dict[tuple[str, int], dict[str, Any]]:
    """ART's class and arguments for every (attack label, budget), checked against ART's signatures."""
    from adapters.art_extraction import native_call

    training = cfg.thief.training
    calls = {}
    for entry in cfg.attacks:
        for budget in cfg.budgets:
            try:
                calls[entry.label, budget] = native_call(
                    entry.attack, budget, training.epochs, training.batch_size, query_batch, entry.sampling or "random",
                    entry.reward or "all", entry.use_probability,
                )  # fmt: skip
            except (AssertionError, ValueError) as exc:
                raise ScenarioError(f"extraction.attacks: {entry.label}: {exc}") from None
    return calls


def plan(scenario: Any) -> dict[tuple[str, int], dict[str, Any]]:
    cfg = scenario.extraction
    return native_calls(cfg, cfg.query_batch_size or fixed(scenario.batch_size))


def base_row(recipe: Recipe, attack: str, budget: int, status: str, native: str | None = None) -> dict[str, Any]:
    """A task's identity columns in the extraction table."""
    return {"model": recipe.name, "defence": recipe.defence_name, "dataset": recipe.data["dataset"], "attack": attack,
            "toolkit": "bridge" if attack == BASELINE else "art", "native_class": native, "budget": budget,
            "status": status}  # fmt: skip


def tasks(
    scenario: Any, calls: dict[tuple[str, int], dict[str, Any]], recipes: list[Recipe]
) -> tuple[list[Task], dict]:
    """The tasks, and what aggregation needs besides their results."""
    cfg: ExtractionConfig = scenario.extraction
    common = {"thief": cfg.thief.model_dump(mode="json", exclude_unset=True),
              "queries": cfg.queries.model_dump(mode="json"),
              "ood": None if cfg.ood is None else cfg.ood.model_dump(mode="json"), "seed": scenario.seed}  # fmt: skip
    suffix = len(recipes) > 1
    out = []
    for recipe in recipes:
        where = f" | {recipe.name}" if suffix else ""
        for budget in cfg.budgets:
            params = {**common, "budget": budget}
            out.append(Task(STUDY, "baseline", recipe, params, f"extraction {BASELINE} n={budget}{where}"))
        for entry in cfg.attacks:
            for budget in cfg.budgets:
                call = calls[entry.label, budget]
                params = {**common, "budget": budget, "attack": entry.model_dump(mode="json"), "label": entry.label,
                          "call": call}  # fmt: skip
                label = f"extraction {entry.label} budget={budget}{where}"
                out.append(Task(STUDY, "extract", recipe, params, label, toolkits=("art",), keep=True))
    meta = {"scenario": scenario.name, "budgets": cfg.budgets, "attacks": [a.label for a in cfg.attacks],
            "queries": cfg.queries.describe(), "ood": None if cfg.ood is None else cfg.ood.describe()}  # fmt: skip
    return out, meta
