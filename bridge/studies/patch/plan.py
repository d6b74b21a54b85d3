"""The patch study planned: per source victim (an undefended or adversarially trained model) and toolkit, one
`train` task (the patch), then one `evaluate` task per victim that judges it and scale: its own model, that model
behind each preprocessing defence, and (with `transfer`) every other victim of the study."""

from __future__ import annotations

from typing import Any

from bridge.core.errors import ScenarioError
from bridge.engine.recipe import Recipe
from bridge.engine.task import Task
from bridge.studies.patch.config import PatchConfig
from bridge.studies.patch.geometry import FILL

STUDY = "patch"


def plan(scenario: Any, n_classes: int) -> dict[str, Any]:
    """ART's class for this configuration here (and why, or why it cannot run), the scales checked."""
    cfg: PatchConfig = scenario.patch
    if cfg.target is not None and cfg.target >= n_classes:
        raise ScenarioError(f"patch.target: class {cfg.target}, but the data has {n_classes} classes")
    if cfg.scales[-1] > FILL[cfg.shape]:
        raise ScenarioError(f"patch.scales: a {cfg.shape} covers at most {FILL[cfg.shape]:.3f} of a square image "
                            f"(its side the image's); got {cfg.scales[-1]}")  # fmt: skip
    art = None
    if "art" in cfg.toolkits:
        from adapters.art_patch import native

        name, why, unsupported = native(cfg.shape, cfg.targeted)
        art = {"native_class": name, "why": why, "unsupported": unsupported}
    return {"art": art}


def base_row(recipe: Recipe, params: dict[str, Any], status: str) -> dict[str, Any]:
    """A task's identity columns in the patch table (`model` is the victim judging the patch)."""
    source = params["source"]
    own = recipe.base == params["source_base"]
    evaluation = "direct" if recipe.name == source else "defence" if own else "transfer"
    return {"model": recipe.name, "defence": recipe.defence_name, "dataset": recipe.data["dataset"], "source": source,
            "evaluation": evaluation, "attack": f"patch-{params['shape']}", "toolkit": params["toolkit"],
            "native_class": params["native_class"], "target": params["target"], "scale": params.get("scale"),
            "status": status}  # fmt: skip


def _training(cfg: PatchConfig, toolkit: str) -> dict[str, Any]:
    """What defines a patch's training (the scales it is trained over: the evaluated range)."""
    common = {"shape": cfg.shape, "target": cfg.target, "rotation": cfg.rotation, "split": cfg.split,
              "n_train": cfg.n_train, "areas": [cfg.scales[0], cfg.scales[-1]],
              "batch_size": cfg.batch_size}  # fmt: skip
    if toolkit == "art":
        return common | cfg.art.model_dump(mode="json")
    return common | {"steps": cfg.steps, "learning_rate": cfg.learning_rate}


def _judges(cfg: PatchConfig, source: Recipe, recipes: list[Recipe]) -> list[Recipe]:
    """The victims that judge a patch made on `source`: itself, its preprocessing-defended versions, the others."""
    own = [source, *(r for r in recipes if r.preprocessing and r.base == source.base)]
    return own + [r for r in recipes if r not in own] if cfg.transfer else own


def tasks(scenario: Any, planned: dict[str, Any], recipes: list[Recipe]) -> tuple[list[Task], dict]:
    """The tasks, and what aggregation needs besides their results."""
    cfg: PatchConfig = scenario.patch
    art = planned["art"]
    out: list[Task] = []
    for source in (r for r in recipes if not r.preprocessing):
        for toolkit in cfg.toolkits:
            native = art["native_class"] if toolkit == "art" else None
            params = {**_training(cfg, toolkit), "toolkit": toolkit, "native_class": native, "seed": scenario.seed,
                      "source": source.name, "source_base": source.base}  # fmt: skip
            if toolkit == "art":
                params |= {"why": art["why"], "unsupported": art["unsupported"]}
            made = Task(STUDY, "train", source, params, f"patch {toolkit} | {source.name}",
                        toolkits=("art",) if toolkit == "art" else (), keep=True)  # fmt: skip
            out.append(made)
            if toolkit == "art" and art["unsupported"]:
                continue
            for judge in _judges(cfg, source, recipes):
                for scale in cfg.scales:
                    shown = cfg.grid if judge is source and scale == cfg.scales[-1] else 0
                    evaluate = {"shape": cfg.shape, "target": cfg.target, "rotation": cfg.rotation, "scale": scale,
                                "draws": cfg.draws, "grid": shown, "seed": scenario.seed, "toolkit": toolkit,
                                "native_class": native, "source": source.name, "source_base": source.base}  # fmt: skip
                    label = f"patch {toolkit} {source.name} → {judge.name} scale={scale:g}"
                    out.append(Task(STUDY, "evaluate", judge, evaluate, label, depends=(made.key,)))
    meta = {"scenario": scenario.name, "scales": cfg.scales, "shape": cfg.shape, "target": cfg.target,
            "toolkits": cfg.toolkits, "rotation": cfg.rotation, "draws": cfg.draws, "split": cfg.split}  # fmt: skip
    return out, meta
