"""Victims built from recipes: the shared model on its device, with the evaluation samples and clean outputs.

The driver builds every victim a study needs before any task is scheduled (training a zoo model if it is not in
the model cache); a worker builds the same victim from the recipe alone, loading the weights from the cache and
never training. Built victims and loaded data are kept per process (a few at a time), so the tasks a worker
runs on one victim share one model.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from bridge.core.identity import digest
from bridge.data.config import DataConfig
from bridge.data.dataset import Dataset, load_split, select
from bridge.defences.grid import DefenceEntry, entry_name, model_of, parse_entry, victim_name
from bridge.defences.preprocessing import Defence
from bridge.engine.batch import fixed
from bridge.engine.recipe import NONE, Recipe
from bridge.models.build import build_model, model_identity
from bridge.models.config import ModelConfig
from bridge.models.keras import KerasModel
from bridge.models.shared import SharedModel, resolve_device

KEEP = 8  # victims (and data sets) kept per process


@dataclass
class Victim:
    """The shared model with the evaluation data on its device and its clean outputs, computed once."""

    recipe: Recipe
    model: SharedModel | KerasModel
    x: torch.Tensor
    y: torch.Tensor
    clean_logits: torch.Tensor
    record: dict[str, Any]  # the model's record (config, hash, weights file and its sha256, training curves)

    @property
    def clean_pred(self) -> torch.Tensor:
        return self.clean_logits.argmax(1)

    @property
    def name(self) -> str:
        return self.recipe.name


class _Kept(OrderedDict):
    """At most KEEP entries, the least recently used dropped first."""

    def get_or(self, key: str, make: Callable[[], Any]) -> Any:
        if key in self:
            self.move_to_end(key)
            return self[key]
        value = self[key] = make()
        while len(self) > KEEP:
            self.popitem(last=False)
        return value


_DATA, _VICTIMS = _Kept(), _Kept()


def load_data(cfg: DataConfig, seed: int, log: Callable[[str], None] = print) -> tuple[Dataset, Dataset]:
    """The evaluation samples (the seeded selection of the split) and the training split, loaded once per process."""

    def load() -> tuple[Dataset, Dataset]:
        evaluation = select(load_split(cfg, log=log), cfg.n_samples, seed, balanced=cfg.balanced)
        return evaluation, load_split(cfg, "train", log=log)

    return _DATA.get_or(digest({"data": cfg.model_dump(mode="json"), "seed": seed}), load)


def front(entry: DefenceEntry, input_shape: tuple[int, ...]) -> Defence | None:
    """The defence the network is built for and trained behind (one that changes the inputs), if any."""
    return entry if isinstance(entry, Defence) and entry.changes_shape(input_shape) else None


def make_recipe(scenario: Any, cfg: ModelConfig, entry: DefenceEntry, evaluation: Dataset, train: Dataset) -> Recipe:
    """The recipe of model `cfg` behind defence `entry` for `scenario`, without building anything."""
    model = model_of(cfg, entry)
    return Recipe(
        name=victim_name(cfg.name, entry),
        base=cfg.name,
        model=cfg.model_dump(mode="json", exclude_unset=True),
        defence=NONE if entry == NONE else entry.model_dump(mode="json", exclude_unset=True),
        defence_name=entry_name(entry),
        data=scenario.data.model_dump(mode="json"),
        seed=scenario.seed,
        device=scenario.device,
        precision=scenario.precision,
        batch_size=fixed(scenario.batch_size),
        model_identity=model_identity(model, train, front(entry, train.input_shape)),
        data_fingerprint=evaluation.fingerprint,
        train_fingerprint=train.fingerprint,
    )


def build_victim(
    recipe: Recipe, *, train_missing: bool = False, progress: bool = False, log: Callable[[str], None] = print
) -> Victim:
    """The victim `recipe` describes. A model missing from the cache is trained only with `train_missing` (the
    driver's build); the evaluation samples must be the ones the recipe was made with."""
    data_cfg = DataConfig.model_validate(recipe.data)
    evaluation, train = load_data(data_cfg, recipe.seed, log)
    if (evaluation.fingerprint, train.fingerprint) != (recipe.data_fingerprint, recipe.train_fingerprint):
        raise RuntimeError(
            f"the data here differs from the data {recipe.name}'s recipe was made with ({data_cfg.dataset})"
        )
    cfg = ModelConfig.model_validate(recipe.model)
    entry: DefenceEntry = NONE if recipe.defence == NONE else parse_entry(recipe.defence)
    cfg = model_of(cfg, entry)
    device = resolve_device(recipe.device)
    if cfg.framework == "keras":
        net, record = build_model(cfg, train, progress, log, train_missing=train_missing)
        norm = None if cfg.normalize is None else (cfg.normalize.mean, cfg.normalize.std)
        shape, k, bounds = evaluation.input_shape, evaluation.n_classes, evaluation.bounds
        model: SharedModel | KerasModel = KerasModel(net, shape, k, bounds, recipe.device, recipe.name, norm)
    else:
        behind = front(entry, train.input_shape)
        net, record = build_model(cfg, train, progress, log, device, behind, train_missing)
        if isinstance(entry, Defence) and behind is None:
            net = entry.wrap(net, evaluation.bounds).to(device)
        model = SharedModel(net, evaluation.input_shape, evaluation.n_classes, evaluation.bounds, device, recipe.name,
                            recipe.precision)  # fmt: skip
    if record["hash"] != recipe.model_identity:
        raise RuntimeError(f"the weights of {recipe.name} here ({record['hash']}) are not the recipe's")
    if entry != NONE:
        record = {**record, "defence": entry.model_dump(mode="json")}
    x, y = evaluation.x.to(model.device), evaluation.y.to(model.device)
    return Victim(recipe, model, x, y, model.predict(x, recipe.batch_size), record)


def victim(recipe: Recipe, **build: Any) -> Victim:
    """`build_victim(recipe)`, kept per process: the tasks on one victim share its model."""
    return _VICTIMS.get_or(recipe.key, lambda: build_victim(recipe, **build))


def forget() -> None:
    """Drop the victims this process keeps (the driver, once workers elsewhere take over the devices)."""
    _VICTIMS.clear()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
