"""Built-in training for zoo models: the `TrainingConfig` a scenario writes under `model.training`, and `train`.

Training is deterministic for a given seed: one seeded generator draws every shuffle and augmentation, and the
caller seeds torch before building the network (initialisation, dropout).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any, Literal

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, PositiveInt, model_validator
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from torch import nn
from torch.optim.lr_scheduler import CosineAnnealingLR, LambdaLR, LRScheduler, MultiStepLR, StepLR

from bridge.data import Dataset

CROP_PADDING = 4
MIN_CROP_SIZE = 16  # a 4-pixel shift is a quarter of an 8x8 digit: crop_flip would destroy it


class TrainingConfig(BaseModel):
    """How a zoo model is trained. The defaults train the digits small_cnn to ~97% in a few seconds on a CPU."""

    model_config = ConfigDict(extra="forbid")

    optimizer: Literal["sgd", "adam", "adamw"] = "adam"
    lr: float = Field(default=1e-3, gt=0)
    momentum: float = Field(default=0.9, ge=0)  # sgd only
    nesterov: bool = False  # sgd only
    weight_decay: float = Field(default=0.0, ge=0)  # L2 for sgd and adam, decoupled for adamw
    epochs: int = Field(default=20, gt=0)
    batch_size: int = Field(default=64, gt=0)
    schedule: Literal["none", "cosine", "step", "multistep"] = "none"  # stepped once per epoch
    step_size: PositiveInt | None = None  # step: epochs between decays (default: a third of the epochs)
    milestones: list[PositiveInt] = []  # multistep: the epochs at which the lr is multiplied by gamma
    gamma: float = Field(default=0.1, gt=0)  # step and multistep
    label_smoothing: float = Field(default=0.0, ge=0, lt=1)
    augment: Literal["none", "crop_flip"] = "none"  # crop_flip: 4-pixel zero-padded random crop + horizontal flip
    seed: int = 0

    @model_validator(mode="after")
    def _consistent(self) -> TrainingConfig:
        """Refuse options that the chosen optimizer or schedule would silently ignore."""
        given = self.model_fields_set
        if self.optimizer != "sgd" and given & {"momentum", "nesterov"}:
            raise ValueError(f"momentum and nesterov apply to optimizer sgd only, not {self.optimizer}")
        if self.nesterov and self.momentum == 0:
            raise ValueError("nesterov needs momentum > 0")
        if self.schedule == "multistep" and not self.milestones:
            raise ValueError("schedule multistep needs milestones: the epochs at which the lr is multiplied by gamma")
        for option, schedules in (
            ("milestones", ["multistep"]),
            ("step_size", ["step"]),
            ("gamma", ["step", "multistep"]),
        ):
            if option in given and self.schedule not in schedules:
                raise ValueError(f"{option} applies to schedule {' or '.join(schedules)} only, not {self.schedule}")
        return self

    def check_input(self, input_shape: tuple[int, ...]) -> None:
        """Raise ValueError when this config cannot train on inputs of `input_shape` (C, H, W)."""
        if self.augment == "crop_flip" and min(input_shape[-2:]) < MIN_CROP_SIZE:
            size = "x".join(map(str, input_shape[-2:]))
            raise ValueError(
                f"augment crop_flip needs inputs of at least {MIN_CROP_SIZE}x{MIN_CROP_SIZE} "
                f"(a {CROP_PADDING}-pixel shift would destroy {size} images); use augment: none"
            )


def crop_flip(x: torch.Tensor, generator: torch.Generator, padding: int = CROP_PADDING) -> torch.Tensor:
    """Per image: a random HxW crop of the image zero-padded by `padding`, mirrored with probability 1/2.

    The random numbers come from `generator` (a CPU generator), so batches are the same on every device.
    """
    n, c, h, w = x.shape
    shift = torch.randint(0, 2 * padding + 1, (2, n, 1), generator=generator).to(x.device)
    flip = (torch.rand(n, 1, generator=generator) < 0.5).to(x.device)
    rows = shift[0] + torch.arange(h, device=x.device)
    cols = shift[1] + torch.arange(w, device=x.device)
    cols = torch.where(flip, cols.flip(1), cols)  # reading the crop's columns backwards mirrors it
    padded = F.pad(x, (padding,) * 4)
    batch = torch.arange(n, device=x.device)[:, None, None, None]
    channel = torch.arange(c, device=x.device)[None, :, None, None]
    return padded[batch, channel, rows[:, None, :, None], cols[:, None, None, :]]


def _optimizer(params: Iterable[nn.Parameter], cfg: TrainingConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(
            params, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov, weight_decay=cfg.weight_decay
        )
    optimizer = torch.optim.Adam if cfg.optimizer == "adam" else torch.optim.AdamW
    return optimizer(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


SCHEDULES: dict[str, Callable[[torch.optim.Optimizer, TrainingConfig], LRScheduler]] = {
    "none": lambda opt, cfg: LambdaLR(opt, lambda _: 1.0),
    "cosine": lambda opt, cfg: CosineAnnealingLR(opt, T_max=cfg.epochs),
    "step": lambda opt, cfg: StepLR(opt, step_size=cfg.step_size or max(cfg.epochs // 3, 1), gamma=cfg.gamma),
    "multistep": lambda opt, cfg: MultiStepLR(opt, milestones=cfg.milestones, gamma=cfg.gamma),
}


def _batches(order: torch.Tensor, batch_size: int) -> list[torch.Tensor]:
    """Consecutive batches of `order`; a last batch of one sample is dropped (batch norm cannot train on it)."""
    batches = list(order.split(batch_size))
    return batches[:-1] if len(batches) > 1 and len(batches[-1]) == 1 else batches


def _progress_bar(enabled: bool) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("epoch {task.fields[epoch]}"),
        TextColumn("loss {task.fields[loss]:.4f}"),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        disable=not enabled,
    )


def train(
    net: nn.Module, data: Dataset, cfg: TrainingConfig, progress: bool = False, description: str = "training"
) -> dict[str, Any]:
    """Train `net` on `data` in place (on the net's device) with cross-entropy; leaves it in eval mode.

    Returns the mean training loss and the accuracy on the training batches (as seen while training:
    augmented, in train mode) per epoch, and the wall time. With `progress`, a bar on stderr shows the
    epoch and the running loss.
    """
    start = time.perf_counter()
    cfg.check_input(data.input_shape)
    device = next(net.parameters()).device
    generator = torch.Generator().manual_seed(cfg.seed)
    optimizer = _optimizer(net.parameters(), cfg)
    scheduler = SCHEDULES[cfg.schedule](optimizer, cfg)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    losses: list[float] = []
    accuracies: list[float] = []
    net.train()
    steps = cfg.epochs * len(_batches(torch.arange(len(data)), cfg.batch_size))
    with _progress_bar(progress) as bar:
        task = bar.add_task(description, total=steps, epoch=f"0/{cfg.epochs}", loss=float("nan"))
        for epoch in range(cfg.epochs):
            batches = _batches(torch.randperm(len(data), generator=generator), cfg.batch_size)
            total_loss, correct, seen = 0.0, 0, 0
            for idx in batches:
                x, y = data.x[idx].to(device), data.y[idx].to(device)
                if cfg.augment == "crop_flip":
                    x = crop_flip(x, generator)
                optimizer.zero_grad()
                logits = net(x)
                loss = loss_fn(logits, y)
                loss.backward()
                optimizer.step()
                total_loss += loss.item() * len(idx)
                correct += int((logits.argmax(1) == y).sum())
                seen += len(idx)
                bar.update(task, advance=1, epoch=f"{epoch + 1}/{cfg.epochs}", loss=total_loss / seen)
            scheduler.step()
            losses.append(total_loss / seen)
            accuracies.append(correct / seen)
    net.eval()
    return {"loss_curve": losses, "train_accuracy_curve": accuracies, "train_time_s": time.perf_counter() - start}
