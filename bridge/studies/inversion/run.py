"""One inversion task: MIFace's reconstruction of every asked class on one victim, judged by the bridge: the
victim's own confidence in the class, an independently trained evaluator's prediction, and which class's mean
training image the reconstruction is nearest (L2)."""

from __future__ import annotations

import importlib
import time

import numpy as np
import pandas as pd
import torch

from bridge.data.config import DataConfig
from bridge.data.dataset import load_split
from bridge.engine.executors import Progress
from bridge.engine.result import Result
from bridge.engine.task import Task
from bridge.engine.victim import victim
from bridge.models.build import build_model
from bridge.models.shared import SharedModel
from bridge.report import plots
from bridge.studies.inversion.config import InversionConfig
from bridge.studies.inversion.plots import inversion_grid


def class_means(x: torch.Tensor, y: torch.Tensor, n_classes: int) -> torch.Tensor:
    """The mean training image of each class (NCHW)."""
    return torch.stack([x[y == c].mean(0) for c in range(n_classes)])


def judge(
    recon: torch.Tensor, classes: torch.Tensor, means: torch.Tensor, victim_probs: torch.Tensor,
    evaluator_pred: torch.Tensor,
) -> pd.DataFrame:  # fmt: skip
    """Per reconstructed class: the victim's probability of it, the evaluator's prediction, the L2 distance to the
    class's own mean image and which class mean is nearest."""
    distances = torch.cdist(recon.flatten(1).double(), means.flatten(1).double())
    return pd.DataFrame({
        "class": classes.numpy(),
        "victim_confidence": victim_probs[torch.arange(len(classes)), classes].numpy(),
        "evaluator_pred": evaluator_pred.numpy(),
        "evaluator_correct": (evaluator_pred == classes).numpy(),
        "distance_to_class_mean": distances[torch.arange(len(classes)), classes].numpy(),
        "nearest_mean": distances.argmin(1).numpy(),
        "nearest_mean_correct": (distances.argmin(1) == classes).numpy(),
    })  # fmt: skip


def run_invert(task: Task, inputs: dict[str, Result], progress: Progress) -> Result:
    """MIFace on the victim of `task.recipe`, then the bridge's judgement of every reconstruction."""
    cfg = InversionConfig.model_validate(task.params["inversion"])
    v = victim(task.recipe)
    model = v.model
    train = load_split(DataConfig.model_validate(task.recipe.data), "train", log=lambda _: None)
    net, record = build_model(cfg.evaluator, train, log=lambda _: None)
    evaluator = SharedModel(net, train.input_shape, train.n_classes, train.bounds, "cpu", "evaluator")
    classes = torch.tensor(task.params["classes"], dtype=torch.int64)
    means = class_means(train.x, train.y, train.n_classes)
    start = torch.zeros_like(means[:1]) if cfg.init == "zeros" else train.x.mean(0, keepdim=True)
    x0 = start.expand(len(classes), *start.shape[1:]).cpu().numpy()
    torch.manual_seed(task.recipe.seed)
    started, clock = time.time(), time.perf_counter()
    art = importlib.import_module("adapters.art_inversion")
    with model.eval_mode():
        recon = torch.as_tensor(art.miface(model, x0, classes.numpy(), cfg)).cpu()
    wall = time.perf_counter() - clock
    probs = model.predict(recon.to(model.device), cfg.batch_size).softmax(1).cpu()
    per_class = judge(recon, classes, means, probs, evaluator.predict(recon, cfg.batch_size).argmax(1).cpu())
    evaluator_accuracy = float((evaluator.predict(v.x.cpu()).argmax(1) == v.y.cpu()).float().mean())
    metrics = {
        "evaluator_accuracy_on_reconstructions": float(per_class["evaluator_correct"].mean()),
        "nearest_mean_accuracy": float(per_class["nearest_mean_correct"].mean()),
        "victim_confidence_mean": float(per_class["victim_confidence"].mean()),
        "distance_to_class_mean_mean": float(per_class["distance_to_class_mean"].mean()),
        "evaluator_clean_accuracy": evaluator_accuracy,
        "wall_time_s": wall,
    }
    row = {"model": task.recipe.name, "defence": task.recipe.defence_name, "attack": "miface", "toolkit": "art",
           "native_class": "MIFace", "status": "ok", "classes": len(classes), "init": cfg.init,
           "evaluator": f"{cfg.evaluator.name} ({record['hash'][:8]})", **metrics}  # fmt: skip
    arrays = {"reconstructions": recon.numpy(), "class_means": means[classes].numpy(),
              "bounds": np.asarray(model.bounds, dtype=np.float64)}  # fmt: skip
    progress(1)
    return task.result("ok", row=row, metrics=metrics, per_sample=per_class, arrays=arrays,
                       files={"reconstructions.png": grid_png(arrays, per_class)}, started=started,
                       ended=started + wall)  # fmt: skip


def grid_png(arrays: dict[str, np.ndarray], per_class: pd.DataFrame) -> bytes:
    """The reconstructions above their classes' mean images, from a result's arrays (the child's and the parent's
    figure are the same drawing)."""
    lo, hi = arrays["bounds"]
    grid = inversion_grid(torch.as_tensor(arrays["reconstructions"]), torch.as_tensor(arrays["class_means"]),
                          per_class, (float(lo), float(hi)))  # fmt: skip
    return plots.png(grid)


RUNNERS = {"invert": run_invert}
