"""One attack cell measured: the toolkit's attack in batches on the shared model, then every sample judged by the
bridge from the model's own outputs (a toolkit's success flag is never read)."""

from __future__ import annotations

import functools
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from bridge.attacks.adapter import Translation, Unsupported
from bridge.attacks.spec import AttackSpec
from bridge.core.errors import one_line
from bridge.engine.batch import AUTO, attack_batch
from bridge.engine.executors import Progress
from bridge.models.keras import KerasModel
from bridge.models.shared import SharedModel
from bridge.studies.evasion.analysis import Outcome, median_distance
from bridge.studies.evasion.metrics import evaluate_cell


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def make_targets(mode: str, y: torch.Tensor, clean_logits: torch.Tensor, seed: int) -> torch.Tensor | None:
    """Target labels, the same for every toolkit: uniform over the other classes, or the least likely one."""
    if mode == "none":
        return None
    if mode == "least_likely":
        return clean_logits.argmin(1).to(y.device)
    n_classes = clean_logits.shape[1]
    gen = torch.Generator().manual_seed(seed)
    shift = torch.randint(1, n_classes, (len(y),), generator=gen).to(y.device)
    return (y + shift) % n_classes


@dataclass
class Measured:
    """A cell's outcome: metrics and the per-sample table, the examples, and when the attack ran (epoch s)."""

    metrics: dict[str, float]
    per_sample: pd.DataFrame
    x_adv: torch.Tensor
    adv_pred: torch.Tensor
    targets: torch.Tensor | None
    started: float
    ended: float


AttackRun = Callable[..., tuple[torch.Tensor, dict[str, float], float]]


def _unsupported_unless_bf16_runs(run: AttackRun) -> AttackRun:
    """Under precision bf16, an attack that raises is run once more with the model's forward in fp32: if it runs
    there, the toolkit cannot run this cell in bf16 and the cell says so (`Unsupported`, naming the bf16 error; the
    study goes on); if it fails in fp32 too, the bf16 error stands. Every catalogue attack of the three toolkits
    runs in bf16 (docs/performance.md, GPU); a native class may not."""

    @functools.wraps(run)
    def attack(
        spec: AttackSpec,
        translation: Translation,
        model: SharedModel | KerasModel,
        x: torch.Tensor,
        y: torch.Tensor,
        targets: torch.Tensor | None,
        progress: Progress | None = None,
    ) -> tuple[torch.Tensor, dict[str, float], float]:
        try:
            return run(spec, translation, model, x, y, targets, progress)
        except Unsupported:
            raise
        except Exception as exc:
            if model.precision != "bf16":
                raise
            model.precision = "fp32"
            try:
                run(spec, translation, model, x, y, targets)
            except Exception:
                raise exc from None
            finally:
                model.precision = "bf16"
            raise Unsupported(f"{spec.toolkit} {translation.native} cannot run under precision bf16 "
                              f"({one_line(exc)}); it runs under fp32") from exc  # fmt: skip

    return attack


@_unsupported_unless_bf16_runs
def attack(
    spec: AttackSpec,
    translation: Translation,
    model: SharedModel | KerasModel,
    x: torch.Tensor,
    y: torch.Tensor,
    targets: torch.Tensor | None,
    progress: Progress | None = None,
) -> tuple[torch.Tensor, dict[str, float], float]:
    """Run the attack in batches of `spec.batch_size`; returns x_adv, its cost as counted by the bridge (with the batch
    it ran in), and its start time (epoch s). `progress(1)` after every batch. A batch_size of `auto` is resolved
    here, on the model's device (`bridge.engine.batch.attack_batch`), and the translation made again for it."""
    from bridge.attacks.adapter import get_adapter

    adapter = get_adapter(spec.toolkit)
    if spec.batch_size == AUTO:  # before the seeding: the probe's random draws do not shift the attack's
        spec = spec.model_copy(update={"batch_size": attack_batch(spec, model, x, y, targets)})
        translation = adapter.translate(spec, model.n_classes)
    seed_everything(spec.seed)
    b = spec.batch_size
    with model.eval_mode(), model.frozen(), model.counting() as counters:
        started, start = time.time(), time.perf_counter()
        run = adapter.build(translation, spec, model)
        chunks = []
        for i in range(0, len(y), b):
            xb, yb = x[i : i + b], y[i : i + b]
            with model.query_budget(xb, yb, spec.max_queries):
                chunks.append(run(xb, yb, None if targets is None else targets[i : i + b]))
            if progress is not None:
                progress(1)
        if model.device.type == "cuda":
            torch.cuda.synchronize(model.device)
        wall = time.perf_counter() - start
    x_adv = torch.cat(chunks)
    if x_adv.shape != x.shape or x_adv.dtype != torch.float32 or x_adv.device != model.device:
        raise TypeError(f"adapter returned {tuple(x_adv.shape)} {x_adv.dtype} on {x_adv.device}")
    n = len(y)
    cost = {
        "wall_time_s": wall,
        "samples_per_s": n / wall if wall > 0 else float("inf"),
        "queries_per_sample": counters.forward_samples / n,
        "batch_size": b,
    }
    return x_adv, {**cost, **counters.as_metrics()}, started


def measure(
    spec: AttackSpec,
    translation: Translation,
    model: SharedModel | KerasModel,
    x: torch.Tensor,
    y: torch.Tensor,
    clean_logits: torch.Tensor,
    progress: Progress | None = None,
) -> Measured:
    """Attack, then judge every sample with the model's own outputs."""
    targets = make_targets(spec.targeted, y, clean_logits, spec.seed)
    x_adv, cost, started = attack(spec, translation, model, x, y, targets, progress)
    ended = started + cost["wall_time_s"]
    adv_pred = model.predict(x_adv, cost["batch_size"]).argmax(1)
    result = evaluate_cell(
        x, x_adv, y, clean_logits.argmax(1), adv_pred,
        norm=spec.norm, eps=spec.eps, fixed_budget=spec.kind == "fixed", bounds=model.bounds, targets=targets,
    )  # fmt: skip
    metrics = {**result.metrics, **cost}
    if spec.kind == "minimum":
        metrics["median_distance"] = median_distance(Outcome(spec, {}, result.per_sample))
    return Measured(metrics, result.per_sample, x_adv, adv_pred, targets, started, ended)
