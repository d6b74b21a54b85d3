"""The patch study's tasks, each from its recipe to a `Result`: `train` makes one patch (the bridge's or ART's) on
the source victim's training images; `evaluate` pastes it, with the bridge's own `geometry.apply`, into the
evaluation samples at one scale and judges the victim's predictions, beside a random-noise patch of the same shape
placed identically (the control). Every number comes from predictions the bridge makes."""

from __future__ import annotations

import importlib
import json
import time

import torch

from bridge.data.config import DataConfig
from bridge.data.dataset import load_split, select
from bridge.engine.executors import Progress
from bridge.engine.result import Result
from bridge.engine.task import Task
from bridge.engine.victim import Victim
from bridge.studies.patch.geometry import apply, draw, max_area, side
from bridge.studies.patch.metrics import success
from bridge.studies.patch.optimise import optimise
from bridge.studies.patch.plan import base_row

CONTROL_SEED = 1  # offset of the noise patch's seed from the scenario's


def _training_images(task: Task) -> tuple[torch.Tensor, torch.Tensor]:
    params = task.params
    data = load_split(DataConfig.model_validate(task.recipe.data), params["split"], log=lambda _: None)
    data = select(data, params["n_train"], params["seed"])
    return data.x, data.y


def run_train(task: Task, victim: Victim, inputs: dict[str, Result], progress: Progress) -> Result:
    """One patch on the source victim: the bridge's (Adam through `apply`) or ART's (the class the plan chose)."""
    params = task.params
    model = victim.model
    image = model.input_shape[1:]
    if params["areas"][1] > max_area(params["shape"], image):
        raise ValueError(f"patch.scales: a {params['shape']} covers at most {max_area(params['shape'], image):.3f} "
                         f"of a {image[0]}x{image[1]} image")  # fmt: skip
    row = base_row(task.recipe, params, "ok")
    if params.get("unsupported"):
        status = f"unsupported: {params['unsupported']}"
        progress(1)
        return task.result(status, row=row | {"status": status})
    x, y = _training_images(task)
    target = params["target"]
    start = time.perf_counter()
    if params["toolkit"] == "art":
        art = importlib.import_module("adapters.art_patch")
        labels = y.numpy() if target is None else torch.full_like(y, target).numpy()
        sides = tuple(side(a, params["shape"], image) for a in params["areas"])
        patch_np, call = art.generate(
            model, params["native_class"], x.numpy(), labels, shape=params["shape"], targeted=target is not None,
            target=target or 0, sides=sides, rotation=params["rotation"], max_iter=params["max_iter"],
            learning_rate=params["learning_rate"], batch_size=params["batch_size"], seed=params["seed"],
        )  # fmt: skip
        patch = torch.from_numpy(patch_np)
        files = {"translation.json": json.dumps(call | {"why": params["why"]}, indent=1)}
    else:
        patch = optimise(
            model, x, y, shape=params["shape"], target=target, areas=tuple(params["areas"]),
            rotation=params["rotation"], steps=params["steps"], learning_rate=params["learning_rate"],
            batch_size=params["batch_size"], seed=params["seed"],
        )  # fmt: skip
        files = {}
    wall = time.perf_counter() - start
    progress(1)
    metrics = {"wall_time_s": wall, "n_train": float(len(y))}
    return task.result("ok", row=row | metrics, metrics=metrics, arrays={"patch": patch.numpy()}, files=files)


def run_evaluate(task: Task, victim: Victim, inputs: dict[str, Result], progress: Progress) -> Result:
    """The source's patch at one scale on this victim, `draws` seeded placements per image (the same for every
    patch), beside the noise control."""
    (made,) = inputs.values()
    if not made.ok or "patch" not in made.arrays:
        return task.result(f"skipped: its patch {made.state}")
    params = task.params
    model, target = victim.model, params["target"]
    patch = torch.from_numpy(made.arrays["patch"])
    x, y, clean = (t.repeat(params["draws"], *[1] * (t.dim() - 1))
                   for t in (victim.x, victim.y, victim.clean_pred))  # fmt: skip
    generator = torch.Generator().manual_seed(params["seed"])
    placements = draw(torch.full((len(y),), params["scale"]), params["rotation"], params["shape"], x.shape[2:],
                      generator)  # fmt: skip
    lo, hi = model.bounds
    noise_gen = torch.Generator().manual_seed(params["seed"] + CONTROL_SEED)
    noise = lo + (hi - lo) * torch.rand(patch.shape, generator=noise_gen)
    batch = task.recipe.batch_size
    patched = apply(x, patch, params["shape"], placements)
    pred = model.predict(patched, batch).argmax(1)
    control = model.predict(apply(x, noise, params["shape"], placements), batch).argmax(1)
    rate, trials = success(y, clean, pred, target)
    control_rate, _ = success(y, clean, control, target)
    metrics = {"success": rate, "control_success": control_rate,
               "clean_accuracy": float((victim.clean_pred == victim.y).float().mean()), "n_trials": float(trials),
               "n_samples": float(len(victim.y))}  # fmt: skip
    arrays = {}
    if params["grid"]:
        k = min(params["grid"], len(victim.y))
        arrays = {"grid_x": patched[:k].cpu().numpy(), "grid_y": y[:k].cpu().numpy(),
                  "grid_pred": pred[:k].cpu().numpy()}  # fmt: skip
    progress(1)
    return task.result("ok", row=base_row(task.recipe, params, "ok") | metrics, metrics=metrics, arrays=arrays)


RUNNERS = {"train": run_train, "evaluate": run_evaluate}
