"""Built-in training for zoo models: the `TrainingConfig` a scenario writes under `model.training`, and `train`.

Training is deterministic for a given seed: one seeded generator draws every shuffle, augmentation and mixing
coefficient, and the caller seeds torch before building the network (initialisation, dropout, and the random
starts of an adversarial training's attack; ART's come from NumPy, seeded with the training seed).

Besides plain cross-entropy training: adversarial training (`adversarial`, see `bridge.models.adversarial_training`),
Gaussian noise on the inputs, mixup or CutMix, DP-SGD (`dp`, see `bridge.models.dp`) and early stopping on a
seeded held-out slice of the training data.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field, PositiveInt, SerializerFunctionWrapHandler, model_serializer, model_validator
from rich.progress import MofNCompleteColumn, TextColumn
from torch import nn
from torch.optim.lr_scheduler import CosineAnnealingLR, LambdaLR, LRScheduler, MultiStepLR, StepLR

from bridge.core.progress import progress_bar
from bridge.core.schema import Strict
from bridge.data.dataset import Dataset
from bridge.models.adversarial_training import AdversarialStep, AdversarialTrainingConfig, seeded_numpy
from bridge.models.dp import DPConfig, Private

CROP_PADDING = 4
MIN_CROP_SIZE = 16  # a 4-pixel shift is a quarter of an 8x8 digit: crop_flip would destroy it
LATER_OPTIONS = ("dp", "early_stopping")  # left out of a dump when off: see TrainingConfig._dump


class EarlyStoppingConfig(Strict):
    """Stop when the accuracy on a held-out slice of the training data has not risen by more than `min_delta` for
    `patience` epochs, and keep the weights of the best epoch. The slice (a seeded draw of the training samples) is
    not trained on."""

    patience: PositiveInt
    min_delta: float = Field(default=0.0, ge=0)  # an accuracy (a share of the held-out samples), not a percentage
    validation_fraction: float = Field(default=0.1, gt=0, lt=1)


class TrainingConfig(Strict):
    """How a zoo model is trained. The defaults train the digits small_cnn to ~97% in a few seconds on a CPU."""

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
    gaussian_augmentation: float = Field(default=0.0, ge=0)  # sigma of N(0, sigma^2) noise on inputs (then clipped)
    mixup: float = Field(default=0.0, ge=0)  # Beta(alpha, alpha) of mixup (Zhang et al.); 0 = off
    cutmix: float = Field(default=0.0, ge=0)  # Beta(alpha, alpha) of CutMix (Yun et al.); 0 = off
    adversarial: AdversarialTrainingConfig | None = None  # pgd_at, trades or fgsm_at, with the attack that feeds it
    dp: DPConfig | None = None  # DP-SGD through Opacus: noise_multiplier, max_grad_norm, delta
    early_stopping: EarlyStoppingConfig | None = None
    seed: int = 0

    @model_validator(mode="after")
    def _consistent(self) -> TrainingConfig:
        """Refuse options that the chosen optimizer or schedule would silently ignore.

        An option counts as given when it differs from its default, so that a dumped config (which writes every
        field, as the model record does) validates back to itself.
        """
        fields = type(self).model_fields
        given = {name for name in self.model_fields_set if getattr(self, name) != fields[name].default}
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
        if self.mixup and self.cutmix:
            raise ValueError("mixup and cutmix are alternatives: set at most one of them")
        art = self.adversarial is not None and self.adversarial.trainer == "art"
        extras = [k for k in ("augment", "schedule") if getattr(self, k) != "none"] + (
            ["gaussian_augmentation"] if self.gaussian_augmentation else []
        )
        if art and extras:
            raise ValueError(f"{', '.join(extras)} is not available with ART's trainers (adversarial.trainer: art)")
        if (self.mixup or self.cutmix) and self.adversarial is not None:
            mixing = "mixup" if self.mixup else "cutmix"
            raise ValueError(
                f"{mixing} does not combine with adversarial training (the attack needs one label per input)"
            )
        if self.dp is not None and (clash := self._clashes_with_dp()):
            raise ValueError(clash)
        if self.early_stopping is not None and art:
            raise ValueError("early_stopping is not available with ART's trainers (adversarial.trainer: art)")
        return self

    def _clashes_with_dp(self) -> str | None:
        """Why `dp` cannot go with the other options, or None."""
        if self.adversarial is not None:
            return "dp does not combine with adversarial (DP-SGD's accounting covers clean per-sample gradients only)"
        if self.mixup or self.cutmix:
            mixing = "mixup" if self.mixup else "cutmix"
            return f"dp does not combine with {mixing} (a mixed input carries two samples: clipping bounds neither)"
        if self.early_stopping is not None:
            return "dp does not combine with early_stopping (choosing the epoch on held-out data is not accounted for)"
        return None

    @model_serializer(mode="wrap")
    def _dump(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """Without `dp` and `early_stopping` when they are off: a config's dump, and so the cache key of every
        model trained before they existed, stays what it was."""
        out = handler(self)
        return {k: v for k, v in out.items() if not (k in LATER_OPTIONS and v is None)}

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


def gaussian_noise(
    x: torch.Tensor, sigma: float, bounds: tuple[float, float], generator: torch.Generator
) -> torch.Tensor:
    """x + N(0, sigma^2) noise per pixel, clipped to `bounds` (each input replaced by one noisy copy)."""
    noise = torch.randn(x.shape, generator=generator).to(x.device)
    return (x + sigma * noise).clamp(*bounds)


@dataclass(frozen=True)
class Mixed:
    """A mixed batch: inputs that are a `lam` share of (x, y_a) and a 1 - lam share of (x[perm], y_b)."""

    x: torch.Tensor
    y_a: torch.Tensor
    y_b: torch.Tensor
    lam: float

    def loss(self, logits: torch.Tensor, loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """lam * loss(y_a) + (1 - lam) * loss(y_b): the loss against the mixed (soft) target, as CE is linear in it."""
        return self.lam * loss_fn(logits, self.y_a) + (1 - self.lam) * loss_fn(logits, self.y_b)

    def correct(self, logits: torch.Tensor) -> float:
        """Correct predictions weighted by the share of each label."""
        pred = logits.argmax(1)
        return self.lam * float((pred == self.y_a).sum()) + (1 - self.lam) * float((pred == self.y_b).sum())


def _beta(alpha: float, generator: torch.Generator) -> float:
    """One Beta(alpha, alpha) draw from a NumPy generator seeded by the training generator (torch's Beta sampler
    takes no generator)."""
    seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    return float(np.random.default_rng(seed).beta(alpha, alpha))


def mixup(x: torch.Tensor, y: torch.Tensor, alpha: float, generator: torch.Generator) -> Mixed:
    """Mixup (Zhang et al. 2018): lam * x + (1 - lam) * x[perm], lam ~ Beta(alpha, alpha), one lam per batch."""
    lam = _beta(alpha, generator)
    perm = torch.randperm(len(x), generator=generator).to(x.device)
    return Mixed(lam * x + (1 - lam) * x[perm], y, y[perm], lam)


def cutmix(x: torch.Tensor, y: torch.Tensor, alpha: float, generator: torch.Generator) -> Mixed:
    """CutMix (Yun et al. 2019): a box of x[perm] pasted into x; lam is the share of x left (the box is clipped to
    the image, so lam is recomputed from its area). The box has sides sqrt(1 - lam0) of the image's, lam0 ~
    Beta(alpha, alpha), and a uniformly drawn centre."""
    h, w = x.shape[-2:]
    lam0 = _beta(alpha, generator)
    cy = int(torch.randint(0, h, (1,), generator=generator))
    cx = int(torch.randint(0, w, (1,), generator=generator))
    rh, rw = int(h * math.sqrt(1 - lam0)), int(w * math.sqrt(1 - lam0))
    top, bottom = max(cy - rh // 2, 0), min(cy + rh // 2, h)
    left, right = max(cx - rw // 2, 0), min(cx + rw // 2, w)
    perm = torch.randperm(len(x), generator=generator).to(x.device)
    mixed = x.clone()
    mixed[..., top:bottom, left:right] = x[perm][..., top:bottom, left:right]
    lam = 1 - (bottom - top) * (right - left) / (h * w)
    return Mixed(mixed, y, y[perm], lam)


def make_optimizer(params: Iterable[nn.Parameter], cfg: TrainingConfig) -> torch.optim.Optimizer:
    """The optimizer `cfg` names, over `params`: shared by training here and by the studies that train through ART."""
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


def _train_with_art(
    net: nn.Module, data: Dataset, cfg: TrainingConfig, optimizer: torch.optim.Optimizer, start: float
) -> dict[str, Any]:
    """ART's adversarial trainer in place of the bridge's loop (`adversarial.trainer: art`); no curves from ART."""
    import importlib

    adv = cfg.adversarial
    _, translation = adv.translate(data.n_classes)
    art = importlib.import_module("adapters.art_services")
    with seeded_numpy(cfg.seed):  # ART shuffles and draws its random starts with NumPy
        art.art_adversarial_training(
            net, adv.method, translation, adv.beta, optimizer, cfg.label_smoothing, data.input_shape, data.n_classes,
            data.bounds, data.x.numpy(), data.y.numpy(), cfg.epochs, cfg.batch_size,
        )  # fmt: skip
    net.eval()
    return {"loss_curve": [], "train_accuracy_curve": [], "train_time_s": time.perf_counter() - start}


@dataclass
class _Stopper:
    """Early stopping's state: the held-out samples, their accuracy per epoch and the best epoch's weights."""

    cfg: EarlyStoppingConfig
    x: torch.Tensor
    y: torch.Tensor
    curve: list[float]
    best: float = -math.inf
    best_epoch: int = 0
    state: dict[str, torch.Tensor] | None = None
    waited: int = 0

    @classmethod
    def hold_out(cls, data: Dataset, cfg: EarlyStoppingConfig, seed: int) -> tuple[_Stopper, torch.Tensor]:
        """The stopper on a seeded `validation_fraction` of `data`, and the indices of the samples left to train on."""
        order = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))
        k = max(1, round(cfg.validation_fraction * len(data)))
        if k >= len(data) - 1:
            raise ValueError(f"early_stopping: validation_fraction {cfg.validation_fraction} leaves no training data")
        held = order[:k]
        return cls(cfg, data.x[held], data.y[held], []), order[k:]

    def should_stop(self, net: nn.Module, epoch: int, batch_size: int) -> bool:
        """Record the held-out accuracy after `epoch` (1-based) and keep the weights if it is the best so far."""
        device = next(net.parameters()).device
        net.eval()
        with torch.no_grad():
            correct = sum(
                int((net(x.to(device)).argmax(1) == y.to(device)).sum())
                for x, y in zip(self.x.split(batch_size), self.y.split(batch_size), strict=True)
            )
        net.train()
        accuracy = correct / len(self.y)
        self.curve.append(accuracy)
        if accuracy > self.best + self.cfg.min_delta:
            self.best, self.best_epoch, self.waited = accuracy, epoch, 0
            self.state = {k: v.detach().clone() for k, v in net.state_dict().items()}
        else:
            self.waited += 1
        return self.waited >= self.cfg.patience

    def finish(self, net: nn.Module, epochs_run: int, epochs: int) -> dict[str, Any]:
        """Load the best epoch's weights into `net`; the record's `early_stopping` and validation curve."""
        net.load_state_dict(self.state)
        summary = {
            "stopped_epoch": epochs_run, "stopped_early": epochs_run < epochs, "best_epoch": self.best_epoch,
            "best_validation_accuracy": self.best, "validation_samples": len(self.y),
        }  # fmt: skip
        return {"early_stopping": summary, "validation_accuracy_curve": self.curve}


def train(
    net: nn.Module, data: Dataset, cfg: TrainingConfig, progress: bool = False, description: str = "training"
) -> dict[str, Any]:
    """Train `net` on `data` in place (on the net's device) with cross-entropy; leaves it in eval mode.

    Returns the mean training loss and the accuracy on the training batches (as seen while training:
    augmented, in train mode; mixed batches count each label by its share) per epoch, and the wall time.
    With `adversarial` the loss is the method's, `train_accuracy_curve` is the clean accuracy (see
    `AdversarialStep.loss`), and `adversarial_accuracy_curve` (train mode, on the attack's examples) and the
    attack's passes through the model (`attack_forward_samples`, `attack_backward_samples`) are added.
    With `dp`, batches are Opacus's Poisson samples and `dp` (`bridge.models.dp.privacy_spent`'s fields, epsilon
    from the training's own accountant) is added; `net` must have come through `private_network`. With
    `early_stopping`, `early_stopping` (stopped_epoch, best_epoch, best_validation_accuracy, ...) and
    `validation_accuracy_curve` are added and `net` is left with the best epoch's weights.
    With `progress`, a bar on stderr shows the epoch and the running loss.
    """
    start = time.perf_counter()
    cfg.check_input(data.input_shape)
    device = next(net.parameters()).device
    generator = torch.Generator().manual_seed(cfg.seed)
    optimizer = make_optimizer(net.parameters(), cfg)
    scheduler = SCHEDULES[cfg.schedule](optimizer, cfg)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    if cfg.adversarial is not None and cfg.adversarial.trainer == "art":
        return _train_with_art(net, data, cfg, optimizer, start)
    adversary = None
    if cfg.adversarial is not None:
        adversary = AdversarialStep(net, cfg.adversarial, data.input_shape, data.n_classes, data.bounds, device)
    mixing = mixup if cfg.mixup else cutmix if cfg.cutmix else None
    losses: list[float] = []
    accuracies: list[float] = []
    adversarial_accuracies: list[float] = []
    net.train()
    stopper, kept = None, torch.arange(len(data))
    if cfg.early_stopping is not None:
        stopper, kept = _Stopper.hold_out(data, cfg.early_stopping, cfg.seed)
    private, model = None, net
    if cfg.dp is not None:
        private = Private.make(net, optimizer, data, cfg.dp, cfg.batch_size, generator)
        model, optimizer = private.module, private.optimizer

    def batches() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if private is not None:
            yield from private.batches()
            return
        for idx in _batches(kept[torch.randperm(len(kept), generator=generator)], cfg.batch_size):
            yield data.x[idx], data.y[idx]

    per_epoch = len(private.loader) if private is not None else len(_batches(kept, cfg.batch_size))
    columns = (
        TextColumn("epoch {task.fields[epoch]}"),
        TextColumn("loss {task.fields[loss]:.4f}"),
        MofNCompleteColumn(),
    )
    epochs_run = 0
    with progress_bar(*columns, enabled=progress) as bar, seeded_numpy(cfg.seed):
        task = bar.add_task(description, total=cfg.epochs * per_epoch, epoch=f"0/{cfg.epochs}", loss=float("nan"))
        for epoch in range(cfg.epochs):
            total_loss, correct, adversarial_correct, seen = 0.0, 0.0, 0, 0
            for x, y in batches():
                x, y = x.to(device), y.to(device)
                if cfg.augment == "crop_flip":
                    x = crop_flip(x, generator)
                if cfg.gaussian_augmentation:
                    x = gaussian_noise(x, cfg.gaussian_augmentation, data.bounds, generator)
                if adversary is not None:
                    loss, clean, adv = adversary.loss(x, y, loss_fn)
                    correct += clean
                    adversarial_correct += adv
                elif mixing is not None:
                    mixed = mixing(x, y, cfg.mixup or cfg.cutmix, generator)
                    logits = model(mixed.x)
                    loss = mixed.loss(logits, loss_fn)
                    correct += mixed.correct(logits)
                else:
                    logits = model(x)
                    loss = loss_fn(logits, y)
                    correct += int((logits.argmax(1) == y).sum())
                optimizer.zero_grad()  # after the attack: a toolkit's backward pass may have left gradients
                loss.backward()
                optimizer.step()  # with dp, also on an empty Poisson batch: the noise is added all the same
                if len(y):  # the mean loss of an empty batch is NaN
                    total_loss += loss.item() * len(y)
                    seen += len(y)
                bar.update(task, advance=1, epoch=f"{epoch + 1}/{cfg.epochs}", loss=total_loss / max(seen, 1))
            scheduler.step()
            losses.append(total_loss / seen)
            accuracies.append(correct / seen)
            adversarial_accuracies.append(adversarial_correct / seen)
            epochs_run = epoch + 1
            if stopper is not None and stopper.should_stop(net, epochs_run, cfg.batch_size):
                break
    net.eval()
    result: dict[str, Any] = {"loss_curve": losses, "train_accuracy_curve": accuracies}
    if adversary is not None:
        result.update(
            adversarial_accuracy_curve=adversarial_accuracies,
            attack_forward_samples=adversary.counters.forward_samples,
            attack_backward_samples=adversary.counters.backward_samples,
        )
    if private is not None:
        result["dp"] = private.finish()
    if stopper is not None:
        result.update(stopper.finish(net, epochs_run, cfg.epochs))
    return {**result, "train_time_s": time.perf_counter() - start}
