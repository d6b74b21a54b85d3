"""What `validate` and `run` check on this machine before anything is written: whatever can be checked without
running an attack or training a model.

The device exists; the tracking store is usable; the data is here (or will be downloaded) and holds the samples
asked for; every model from outside the zoo loads safely and answers the data's shape (built once: `run` reuses
it); every zoo model's configuration fits the data. A problem is one `ScenarioError` line naming the file and the
key, so that `run` stops before its first write and `validate` never calls a scenario valid that `run` refuses.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

from bridge.core.errors import ScenarioError
from bridge.data.config import DatasetError
from bridge.data.dataset import Dataset
from bridge.data.files import to_download
from bridge.defences.grid import model_of
from bridge.defences.preprocessing import DefenceError
from bridge.engine.recipe import Recipe
from bridge.engine.tracking import resolve_uri, uri_problem
from bridge.engine.victim import front, load_data, make_recipe, victim
from bridge.models.build import check_model
from bridge.models.errors import ModelError
from bridge.models.shared import device_problem
from bridge.scenario.load import Plan


@dataclass(frozen=True)
class Inputs:
    """What a study starts from: its tracking store, its data and a recipe per (model, defence)."""

    uri: str
    evaluation: Dataset
    train: Dataset
    recipes: list[Recipe]


def checked_uri(given: str | None, key: str) -> str:
    """The tracking store in force (`given`, else the environment's, else the default), checked: one line naming
    where the URI came from (`key` for `given`) when it cannot be used."""
    uri = resolve_uri(given)
    if problem := uri_problem(uri):
        source = key if given else "$MLFLOW_TRACKING_URI" if os.environ.get("MLFLOW_TRACKING_URI") else "default store"
        raise ScenarioError(f"{source}: {problem}")
    return uri


def preflight(plan: Plan, log: Callable[[str], None] = print, fetch: bool = True) -> Inputs | None:
    """Check `plan` on this machine and return the study's inputs. With `fetch=False` (validate) data still to be
    downloaded is not fetched, and the checks that need it are left to `run` (None is returned)."""
    scn, where = plan.scenario, plan.path
    if problem := device_problem(scn.device):
        raise ScenarioError(f"{where}: device: {problem}")
    try:
        uri = checked_uri(scn.tracking.uri, "tracking.uri")
    except ScenarioError as exc:
        raise ScenarioError(f"{where}: {exc}") from None
    if plan.data_missing:
        raise ScenarioError(f"{where}: data: {plan.data_missing}")
    if not fetch and to_download(scn.data):
        return None
    try:
        evaluation, train = load_data(scn.data, scn.seed, log)
    except DatasetError as exc:
        message = str(exc)
        raise ScenarioError(f"{where}: {message if message.startswith('data.') else f'data: {message}'}") from None
    recipes = []
    for i, cfg in enumerate(scn.model_list):
        key = f"models[{i}]" if scn.models is not None else "model"
        for j, entry in enumerate(scn.defences):
            try:
                recipe = make_recipe(scn, cfg, entry, evaluation, train)
                if cfg.trained_here:
                    check_model(model_of(cfg, entry), train, front(entry, train.input_shape))
                else:
                    victim(recipe, log=log)  # loaded, checked on the data and kept: `run` reuses it
            except ModelError as exc:
                raise ScenarioError(f"{where}: {key}: {exc}") from None
            except DefenceError as exc:
                raise ScenarioError(f"{where}: defences[{j}]: {exc}") from None
            recipes.append(recipe)
    return Inputs(uri, evaluation, train, recipes)
