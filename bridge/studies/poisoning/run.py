"""The poisoning study's tasks, each from its recipe and inputs to a `Result`.

`reference`: the clean victim (fraction 0) on the triggered inputs: the ASR's base rate and the clean accuracy the
poisoned models are compared with. `craft`: the poisoned training samples (ART), stored as arrays. `train`: the
victim retrained on the poisoned set (one training seed per retraining). `detect`: a detection defence's flagged
samples against the known poisons, then the victim retrained without them. `strip`: STRIP's run-time decisions on
triggered and clean inputs. `cleanse`: Neural Cleanse's reverse-engineered triggers (ART, Keras models), the anomaly
index per class, and the model after ART's pruning. Every model (PyTorch or Keras) is trained through `build_model`
(cached by config and the exact training samples, so the poison is part of the key) and every number is computed
here from the bridge's own predictions.
"""

from __future__ import annotations

import functools
import importlib
import time
from typing import Any

import numpy as np
import pandas as pd
import torch
from pydantic import TypeAdapter

from bridge.data.config import DataConfig
from bridge.data.dataset import Dataset
from bridge.engine.executors import Progress
from bridge.engine.result import Result
from bridge.engine.task import Task
from bridge.engine.victim import load_data, victim
from bridge.models.build import build_model
from bridge.models.config import ModelConfig
from bridge.models.keras import KerasModel
from bridge.models.shared import resolve_device
from bridge.studies.poisoning import strip, triggers
from bridge.studies.poisoning.config import AttackEntry, DefenceEntry
from bridge.studies.poisoning.metrics import (
    Net,
    accuracy,
    anomaly,
    detection_rates,
    device_of,
    success_rate,
)
from bridge.studies.poisoning.plan import base_row

BATCH = 512  # of the bridge's own forward passes


def _art() -> Any:
    return importlib.import_module("adapters.art_poisoning")


def _entry(task: Task) -> Any:
    return TypeAdapter(AttackEntry).validate_python(task.params["attack"])


def _seed(task: Task, *more: float) -> int:
    """A seed of the study's seed, the target, the fraction and `more`."""
    p = task.params
    parts = [p["section"]["seed"], p["target"], round(p.get("fraction", 0.0) * 1e6), *(round(m) for m in more)]
    return int(np.random.SeedSequence(parts).generate_state(1)[0] % 2**31)


def _data(task: Task) -> tuple[Dataset, Dataset]:
    """The evaluation samples and the (clean) training split of the task's recipe."""
    recipe = task.recipe
    return load_data(DataConfig.model_validate(recipe.data), recipe.seed, lambda _: None)


def _device(task: Task) -> torch.device:
    return resolve_device(task.recipe.device)


@torch.no_grad()
def predict(net: Net, x: torch.Tensor) -> np.ndarray:
    device = device_of(net)
    return torch.cat([net(b.to(device)).argmax(1).cpu() for b in x.split(BATCH)]).numpy()


def clean_model(task: Task) -> Net:
    """The clean victim (the scenario's model trained on the clean train split), kept per process."""
    model = victim(task.recipe).model
    return model if isinstance(model, KerasModel) else model.net


def triggered(task: Task, evaluation: Dataset) -> tuple[torch.Tensor, np.ndarray]:
    """The inputs the ASR is measured on, with their true classes: the evaluation samples with the trigger placed,
    or for gradient matching the `n_triggers` evaluation samples of other classes the poison aims at (a seeded
    draw, or those the clean model gives the highest probability of the target)."""
    entry, target = _entry(task), task.params["target"]
    if entry.attack != "gradient_matching":
        return triggers.apply(evaluation.x, entry.model_dump(mode="json"), evaluation.bounds), evaluation.y.numpy()
    others = np.flatnonzero(evaluation.y.numpy() != target)
    if entry.n_triggers > len(others):
        raise ValueError(f"n_triggers {entry.n_triggers}: only {len(others)} evaluation samples of other classes")
    if entry.trigger_choice == "closest":
        logits = victim(task.recipe).clean_logits.cpu()  # on the evaluation samples
        p = logits[torch.from_numpy(others)].softmax(1)[:, target].numpy()
        chosen = np.sort(others[np.argsort(-p, kind="stable")[: entry.n_triggers]])
    else:
        seed = task.params["section"]["seed"]
        chosen = np.sort(np.random.default_rng([seed, target]).choice(others, entry.n_triggers, replace=False))
    return evaluation.x[torch.from_numpy(chosen)], evaluation.y.numpy()[chosen]


def victim_config(task: Task, retraining: int) -> ModelConfig:
    """The recipe's model, its training seed moved by `retraining` (each retraining its own initialisation and batch
    order), and one further for the attacks crafted on the clean model (clean-label, gradient matching): no victim
    retrained on their poison starts from the initialisation and batch order of the model the poison was made on."""
    cfg = ModelConfig.model_validate(task.recipe.model)
    seed = cfg.training.seed + retraining + (_entry(task).attack != "backdoor")
    return cfg.model_copy(update={"training": cfg.training.model_copy(update={"seed": seed})})


def train_on(task: Task, data: Dataset, retraining: int = 0) -> Net:
    """The victim trained on `data` (or loaded from the model cache), in eval mode on the recipe's device; a Keras
    network behind a KerasModel."""
    cfg = victim_config(task, retraining)
    net, _ = build_model(cfg, data, log=lambda _: None, device=_device(task))
    if cfg.framework != "keras":
        return net
    norm = None if cfg.normalize is None else (cfg.normalize.mean, cfg.normalize.std)
    return KerasModel(net, data.input_shape, data.n_classes, data.bounds, task.recipe.device, task.recipe.name, norm)


def poisoned_set(train: Dataset, craft: Result) -> tuple[Dataset, np.ndarray]:
    """The training split with the crafted samples in place, and the mask of the poisoned samples."""
    index = torch.from_numpy(craft.arrays["index"])
    x, y = train.x.clone(), train.y.clone()
    x[index], y[index] = torch.from_numpy(craft.arrays["x"]), torch.from_numpy(craft.arrays["y"]).to(y.dtype)
    mask = np.zeros(len(train), dtype=bool)
    mask[craft.arrays["index"]] = True
    return Dataset(f"{train.name}+poison", x, y, train.n_classes, train.bounds), mask


def _inputs(inputs: dict[str, Result]) -> tuple[Result, Result]:
    """The craft and reference results a task depends on, refused when one of them did not run."""
    if failed := [r.label for r in inputs.values() if not r.ok]:
        raise RuntimeError(f"{', '.join(failed)} did not run")
    by_kind = {r.kind: r for r in inputs.values()}
    return by_kind["craft"], by_kind["reference"]


def _measure(net: Net, evaluation: Dataset, x_trig: torch.Tensor, y_trig: np.ndarray, target: int) -> dict:
    """Clean accuracy on the evaluation samples and ASR on the triggered inputs."""
    asr, n = success_rate(predict(net, x_trig), y_trig, target)
    return {"clean_accuracy": accuracy(predict(net, evaluation.x), evaluation.y.numpy()), "asr": asr,
            "n_triggered": float(n)}  # fmt: skip


def run_reference(task: Task, inputs: dict[str, Result], progress: Progress) -> Result:
    """The clean victim (the scenario's model on the clean train split): the ASR's base rate, the clean accuracy."""
    evaluation, _ = _data(task)
    x_trig, y_trig = triggered(task, evaluation)
    metrics = _measure(clean_model(task), evaluation, x_trig, y_trig, task.params["target"])
    metrics |= {"base_rate": metrics["asr"], "clean_accuracy_reference": metrics["clean_accuracy"]}
    progress(1)
    return task.result("ok", row={**base_row(task.recipe, task.params, "reference", "ok"), **metrics}, metrics=metrics)


def _trigger_fn(entry: Any, bounds: tuple[float, float]) -> Any:
    return functools.partial(triggers.apply_numpy, trigger=entry.model_dump(mode="json"), bounds=bounds)


def _changed(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    return np.flatnonzero((before != after).reshape(len(before), -1).any(1))


def run_craft(task: Task, inputs: dict[str, Result], progress: Progress) -> Result:
    """The poisoned samples: their training-set indices, inputs and labels (arrays of the result)."""
    started = time.time()
    entry, target, fraction = _entry(task), task.params["target"], task.params["fraction"]
    evaluation, train = _data(task)
    x, y = train.x.numpy(), train.y.numpy()
    n, k, bounds = len(train), train.n_classes, train.bounds
    art, seed = _art(), _seed(task)
    if entry.attack == "backdoor":
        others = np.flatnonzero(y != target)
        count = round(fraction * n)
        if not 0 < count <= len(others):
            raise ValueError(f"fraction {fraction:g} of {n} samples is {count} poisons; 1 to {len(others)} possible")
        index = np.sort(np.random.default_rng(seed).choice(others, count, replace=False))
        px, py = art.dirty_label(x[index], target, k, _trigger_fn(entry, bounds))
    else:
        share = float((y == target).mean())
        if fraction >= share:
            raise ValueError(f"{entry.attack} poisons target-class samples: fraction {fraction:g} is not below the "
                             f"target class's share of the training set ({share:.3f})")  # fmt: skip
        net = clean_model(task)
        if entry.attack == "clean_label":
            proxy = art.estimator(net, train.input_shape, k, bounds, _device(task))
            poisoned = art.clean_label(proxy, _trigger_fn(entry, bounds), x, y, target, fraction / share, entry, seed)
        else:
            x_trig, _ = triggered(task, evaluation)
            poisoned = art.gradient_matching(net, train.input_shape, k, bounds, _device(task), x_trig.numpy(), target,
                                             x, y, fraction, entry, seed)  # fmt: skip
        index = _changed(x, poisoned)
        px, py = poisoned[index], y[index]
    metrics = {"n_poison": float(len(index)), "fraction_poisoned": len(index) / n,
               "label_flipped": float((py != y[index]).mean()) if len(index) else 0.0,
               "max_perturbation": float(np.abs(px - x[index]).max()) if len(index) else 0.0,
               "wall_time_s": time.time() - started}  # fmt: skip
    row = {**base_row(task.recipe, task.params, "craft", "ok"), **metrics}
    arrays = {"index": index.astype(np.int64), "x": px.astype(np.float32), "y": np.asarray(py, dtype=np.int64)}
    progress(1)
    return task.result("ok", row=row, metrics=metrics, arrays=arrays, started=started, ended=time.time())


def run_train(task: Task, inputs: dict[str, Result], progress: Progress) -> Result:
    """The victim retrained on the poisoned set: clean accuracy, ASR, and the clean model's numbers beside them."""
    started = time.time()
    craft, reference = _inputs(inputs)
    evaluation, train = _data(task)
    data, _ = poisoned_set(train, craft)
    net = train_on(task, data, task.params["retraining"])
    x_trig, y_trig = triggered(task, evaluation)
    target = task.params["target"]
    metrics = _measure(net, evaluation, x_trig, y_trig, target)
    ref = reference.row
    metrics |= {"base_rate": ref["asr"], "clean_accuracy_reference": ref["clean_accuracy"],
                "accuracy_drop": ref["clean_accuracy"] - metrics["clean_accuracy"],
                "n_poison": craft.row["n_poison"], "fraction_poisoned": craft.row["fraction_poisoned"],
                "wall_time_s": time.time() - started}  # fmt: skip
    per_sample = pd.DataFrame({"y": y_trig, "triggered_pred": predict(net, x_trig)})
    per_sample.index.name = "sample"
    progress(1)
    row = {**base_row(task.recipe, task.params, "train", "ok"), **metrics}
    return task.result("ok", row=row, metrics=metrics, per_sample=per_sample, started=started, ended=time.time())


def _defence(task: Task) -> Any:
    return TypeAdapter(DefenceEntry).validate_python(task.params["defence"])


def run_detect(task: Task, inputs: dict[str, Result], progress: Progress) -> Result:
    """A detection defence on the poisoned set and the victim trained on it (retraining 0): TPR and FPR of what it
    flags against the known poisons; the victim retrained without the flagged samples: clean accuracy and ASR."""
    started = time.time()
    craft, reference = _inputs(inputs)
    evaluation, train = _data(task)
    data, poisoned = poisoned_set(train, craft)
    net = train_on(task, data)
    defence, art = _defence(task), _art()
    if isinstance(net, KerasModel):  # ART's defences read the Keras network's layers
        classifier = art.keras_classifier(net)
    else:
        classifier = art.estimator(net, train.input_shape, train.n_classes, train.bounds, _device(task))
    detect = art.activation_flags if defence.defence == "activation" else art.spectral_flags
    flagged = detect(classifier, data.x.numpy(), data.y.numpy(), defence, _seed(task, 1))
    metrics = detection_rates(flagged, poisoned)
    keep = torch.from_numpy(~flagged)
    kept = Dataset(f"{data.name}-{defence.defence}", data.x[keep], data.y[keep], data.n_classes, data.bounds)
    x_trig, y_trig = triggered(task, evaluation)
    target = task.params["target"]
    before = _measure(net, evaluation, x_trig, y_trig, target)
    after = _measure(train_on(task, kept), evaluation, x_trig, y_trig, target)
    metrics |= {"asr_before": before["asr"], "clean_accuracy_before": before["clean_accuracy"],
                "asr": after["asr"], "clean_accuracy": after["clean_accuracy"], "base_rate": reference.row["asr"],
                "clean_accuracy_reference": reference.row["clean_accuracy"],
                "fraction_poisoned": craft.row["fraction_poisoned"], "wall_time_s": time.time() - started}  # fmt: skip
    per_sample = pd.DataFrame({"index": np.arange(len(data)), "poisoned": poisoned, "flagged": flagged})
    progress(1)
    row = {**base_row(task.recipe, task.params, "detect", "ok"), **metrics}
    return task.result("ok", row=row, metrics=metrics, per_sample=per_sample, started=started, ended=time.time())


def untouched(poisoned: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Indices of `n` training samples the attack did not touch (all of them if fewer), a seeded draw, sorted: the
    clean samples a run-time defence is calibrated or searched on."""
    clean = np.flatnonzero(~poisoned)
    return np.sort(np.random.default_rng(seed).choice(clean, min(n, len(clean)), replace=False))


def run_strip(task: Task, inputs: dict[str, Result], progress: Progress) -> Result:
    """STRIP on the victim trained on the poisoned set (retraining 0), its threshold set on clean training samples
    the attack did not touch: the share of triggered inputs (other classes) it flags, and of clean inputs."""
    started = time.time()
    craft, _ = _inputs(inputs)
    evaluation, train = _data(task)
    data, poisoned = poisoned_set(train, craft)
    net = train_on(task, data)
    defence, target, seed = _defence(task), task.params["target"], _seed(task, 2)
    chosen = untouched(poisoned, defence.n_validation, seed)
    x_trig, y_trig = triggered(task, evaluation)
    x_trig = x_trig[torch.from_numpy(y_trig != target)]
    x_val = train.x[torch.from_numpy(chosen)]
    flags = strip.flags(net, torch.cat([x_trig, evaluation.x]), x_val, defence.num_samples,
                        defence.false_acceptance_rate, seed)  # fmt: skip
    on_triggered, on_clean = flags[: len(x_trig)], flags[len(x_trig) :]
    metrics = {"detection_rate": float(on_triggered.mean()), "strip_fpr": float(on_clean.mean()),
               "n_triggered": float(len(x_trig)), "n_clean": float(len(on_clean)),
               "fraction_poisoned": craft.row["fraction_poisoned"], "wall_time_s": time.time() - started}  # fmt: skip
    progress(1)
    row = {**base_row(task.recipe, task.params, "strip", "ok"), **metrics}
    return task.result("ok", row=row, metrics=metrics, started=started, ended=time.time())


def run_cleanse(task: Task, inputs: dict[str, Result], progress: Progress) -> Result:
    """Neural Cleanse (ART, Keras models) on the victim trained on the poisoned set (retraining 0), its triggers
    sought on clean training samples the attack did not touch: each class's mask L1 norm and anomaly index (computed
    here), the classes flagged, and the clean accuracy and ASR of the model ART's pruning left."""
    started = time.time()
    craft, reference = _inputs(inputs)
    evaluation, train = _data(task)
    if tuple(train.bounds) != (0.0, 1.0):
        status = f"unsupported: ART's NeuralCleanse draws its trigger patterns in [0, 1]; the data's are {train.bounds}"
        return task.result(status, row=base_row(task.recipe, task.params, "cleanse", status))
    data, poisoned = poisoned_set(train, craft)
    model = train_on(task, data)
    defence, target, seed = _defence(task), task.params["target"], _seed(task, 3)
    chosen = untouched(poisoned, defence.n_validation, seed)
    x_trig, y_trig = triggered(task, evaluation)
    before = _measure(model, evaluation, x_trig, y_trig, target)
    masks, mitigated = _art().neural_cleanse(model, data.x[torch.from_numpy(chosen)].numpy(), data.y.numpy()[chosen],
                                             defence, seed)  # fmt: skip
    after = _measure(model, evaluation, x_trig, y_trig, target)  # the network ART pruned in place
    norms = np.abs(masks).reshape(len(masks), -1).sum(1)
    index, flagged = anomaly(norms)
    metrics = {"anomaly_index": float(index[target]), "target_flagged": float(flagged[target]),
               "mask_l1": float(norms[target]), "asr_before": before["asr"],
               "clean_accuracy_before": before["clean_accuracy"], "asr": after["asr"],
               "clean_accuracy": after["clean_accuracy"], "base_rate": reference.row["asr"],
               "clean_accuracy_reference": reference.row["clean_accuracy"],
               "fraction_poisoned": craft.row["fraction_poisoned"], "wall_time_s": time.time() - started}  # fmt: skip
    per_sample = pd.DataFrame({"mask_l1": norms, "anomaly_index": index, "flagged": flagged,
                               "mitigated": np.isin(np.arange(len(norms)), mitigated)})  # fmt: skip
    per_sample.index.name = "class"
    progress(1)
    row = {**base_row(task.recipe, task.params, "cleanse", "ok"), **metrics,
           "flagged_classes": " ".join(map(str, np.flatnonzero(flagged)))}  # fmt: skip
    return task.result("ok", row=row, metrics=metrics, per_sample=per_sample, started=started, ended=time.time())


RUNNERS = {"reference": run_reference, "craft": run_craft, "train": run_train, "detect": run_detect,
           "strip": run_strip, "cleanse": run_cleanse}  # fmt: skip
