"""The shared model: one network on one device, handed to every toolkit, with the bridge's own counters.

Forward and backward passes are counted by hooks on the network itself, so every toolkit is measured the
same way whatever wrapper it puts around the module. Attacks run in eval mode with the weights frozen; the previous
mode of every submodule and each parameter's `requires_grad` are restored afterwards.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn


def device_problem(device: str) -> str | None:
    """Why `device` (auto, cpu, cuda, cuda:N) cannot be used on this machine, or None."""
    if device in ("auto", "cpu"):
        return None
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    index = int(device.partition(":")[2] or 0)
    if count == 0:
        return f"{device}: this machine has no CUDA device; use auto or cpu"
    if index >= count:
        return f"{device}: this machine has {count} CUDA device(s), cuda:0 to cuda:{count - 1}"
    return None


def resolve_device(device: str) -> torch.device:
    """`auto` means cuda when available, else cpu; anything else is passed to torch as written."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def attack_loss(logits: torch.Tensor, y: torch.Tensor, loss: str) -> torch.Tensor:
    """Per-sample loss an untargeted attack maximises: `ce` (cross-entropy), `margin` (best other logit - true
    logit: C&W's, Square's) or `dlr` (Croce & Hein 2020: -(z_y - max_{i!=y} z_i) / (z_pi1 - z_pi3); 3+ classes)."""
    if loss == "ce":
        return torch.nn.functional.cross_entropy(logits, y, reduction="none")
    true = logits.gather(1, y[:, None]).squeeze(1)
    other = logits.masked_fill(torch.nn.functional.one_hot(y, logits.shape[1]).bool(), -torch.inf).amax(1)
    if loss == "margin":
        return other - true
    if loss == "dlr":
        top = logits.sort(1, descending=True).values
        return -(true - other) / (top[:, 0] - top[:, 2] + 1e-12)
    raise ValueError(f"unknown attack loss '{loss}'; allowed: ce, margin, dlr")


@dataclass
class Counters:
    """Passes through the network: calls (batched invocations) and samples (batch items)."""

    forward_calls: int = 0
    forward_samples: int = 0
    backward_calls: int = 0
    backward_samples: int = 0
    queries_blocked: int = 0  # sample-forwards past a query budget, answered without the model's information

    def as_metrics(self) -> dict[str, float]:
        return {k: float(v) for k, v in vars(self).items()}

    def backward(self, batch: int) -> None:
        self.backward_calls += 1
        self.backward_samples += batch


@dataclass
class QueryBudget:
    """At most `limit` sample-forwards for the batch being attacked (max_queries x batch size).

    Past the limit the model answers every input with the logits of its nearest clean sample's true label
    (zero gradient): the attack learns nothing more, whatever toolkit runs it. The bridge's final
    evaluation runs outside the budget, so reported numbers always come from the real model.
    """

    x: torch.Tensor
    y: torch.Tensor
    limit: int
    used: int = 0

    def uninformative(self, inputs: torch.Tensor, output: torch.Tensor) -> torch.Tensor:
        nearest = torch.cdist(inputs.detach().flatten(1).float(), self.x.flatten(1).float()).argmin(1)
        onehot = torch.nn.functional.one_hot(self.y[nearest], output.shape[1]).to(output.dtype)
        return output * 0 + 10.0 * onehot  # keeps the graph (callers may differentiate) with zero gradient


class Observed:
    """The bridge's view of every pass through a shared model, whatever its framework: counters and a query budget,
    each active inside its context manager. The model calls `_forward_seen` once per forward pass."""

    _counters: Counters | None = None
    _budget: QueryBudget | None = None

    def _forward_seen(self, batch: int) -> tuple[Counters | None, bool]:
        """Count a forward pass of `batch` samples: (the active counters, whether the pass is past the budget and
        must be answered uninformatively)."""
        counters = self._counters
        if counters is None:
            return None, False
        counters.forward_calls += 1
        counters.forward_samples += batch
        budget = self._budget
        if budget is None:
            return counters, False
        budget.used += batch
        if budget.used <= budget.limit:
            return counters, False
        counters.queries_blocked += batch
        return counters, True

    @contextmanager
    def counting(self) -> Iterator[Counters]:
        """Count passes made inside the block."""
        counters = Counters()
        self._counters = counters
        try:
            yield counters
        finally:
            self._counters = None

    @contextmanager
    def frozen(self) -> Iterator[Observed]:
        """The model's weights out of autograd inside the block (see `SharedModel.frozen`); a framework whose
        gradients are taken only w.r.t. what is asked for (a Keras GradientTape) has nothing to freeze."""
        yield self

    @contextmanager
    def query_budget(self, x: torch.Tensor, y: torch.Tensor, max_queries: int | None) -> Iterator[None]:
        """Enforce `max_queries` forward passes per sample for the batch (x, y) inside the block."""
        self._budget = None if max_queries is None else QueryBudget(x.detach(), y, max_queries * len(x))
        try:
            yield
        finally:
            self._budget = None


class _ContiguousGrad(torch.autograd.Function):
    """Identity forward; the backward hands the gradient on in the default (contiguous) layout. A channels-last
    network (bf16 on CUDA) gives a channels-last input gradient, and a toolkit that flattens it with `.view`
    fails (torchattacks' PGDL2: `grad.view(batch_size, -1)`). The copy is of the input's size, only when needed."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        return grad.contiguous()


class SharedModel(Observed, nn.Module):
    """Wraps a classifier mapping inputs in `bounds` to logits; this module is what toolkits receive.

    It is a plain nn.Module (never nn.Sequential) so that wrappers which walk Sequential children, as
    ART's does, still call it as a whole and the counting hooks fire. `bridge.models.keras.KerasModel` offers
    the same interface over a Keras model.
    """

    framework = "torch"

    def __init__(
        self,
        net: nn.Module,
        input_shape: tuple[int, ...],
        n_classes: int,
        bounds: tuple[float, float] = (0.0, 1.0),
        device: torch.device | str = "cpu",
        name: str = "model",
        precision: str = "fp32",
    ):
        super().__init__()
        self.net = net
        self.input_shape = tuple(input_shape)
        self.n_classes = n_classes
        self.bounds = (float(bounds[0]), float(bounds[1]))
        self.name = name
        self.precision = precision
        self.net.register_forward_hook(self._on_forward)
        self.to(torch.device(device))
        if precision == "bf16" and self.device.type == "cuda" and len(self.input_shape) == 3:
            self.net.to(memory_format=torch.channels_last)  # tensor-core convolutions want NHWC

    @property
    def device(self) -> torch.device:
        return next(self.net.parameters()).device

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits in float32 whatever the precision, so every toolkit sees the same dtype; under bf16 the input's
        gradient comes back in the default layout too (see `_ContiguousGrad`)."""
        if self.precision == "bf16":
            if x.requires_grad:
                x = _ContiguousGrad.apply(x)
            with torch.autocast(device_type=self.device.type, dtype=torch.bfloat16):
                return self.net(x).float()
        return self.net(x)

    def _on_forward(self, _module: nn.Module, inputs: tuple, output: torch.Tensor) -> torch.Tensor | None:
        batch = int(inputs[0].shape[0])
        counters, blocked = self._forward_seen(batch)
        if counters is None:
            return None
        if blocked:
            output = self._budget.uninformative(inputs[0], output)
        if output.requires_grad:
            output.register_hook(lambda _grad: counters.backward(batch))
        return output if self._budget is not None else None

    @contextmanager
    def eval_mode(self) -> Iterator[SharedModel]:
        """Eval mode inside the block; every submodule's previous mode restored after."""
        modes = {m: m.training for m in self.modules()}
        self.eval()
        try:
            yield self
        finally:
            for module, training in modes.items():
                module.train(training)

    @contextmanager
    def frozen(self) -> Iterator[SharedModel]:
        """Every parameter out of autograd inside the block, each one's `requires_grad` restored after (even on an
        exception). An attack needs gradients w.r.t. its inputs only; a toolkit that calls `loss.backward()` (ART's
        estimators) would otherwise also compute, and accumulate into `.grad`, every weight's gradient."""
        flags = [(p, p.requires_grad) for p in self.parameters()]
        for p, _ in flags:
            p.requires_grad_(False)
        try:
            yield self
        finally:
            for p, flag in flags:
                p.requires_grad_(flag)

    def margin_gradient(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Gradient of (true logit - best other logit) w.r.t. the inputs (the interface KerasModel shares)."""
        return -self.loss_gradient(x, y, "margin")

    def loss_gradient(self, x: torch.Tensor, y: torch.Tensor, loss: str, batch_size: int = 128) -> torch.Tensor:
        """Gradient w.r.t. the inputs of the summed per-sample attack loss `loss` (see `attack_loss`), computed as
        the attacks compute it: float32 logits, autograd. Passes count only inside `counting()`, like any other."""
        grads = []
        with self.eval_mode():
            for i in range(0, len(x), batch_size):
                xs = x[i : i + batch_size].detach().to(self.device).clone().requires_grad_(True)
                (grad,) = torch.autograd.grad(
                    attack_loss(self(xs), y[i : i + batch_size].to(self.device), loss).sum(), xs
                )
                grads.append(grad)
        return torch.cat(grads) if grads else torch.empty_like(x)

    @torch.no_grad()
    def predict(self, x: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
        """Logits for x, batched, on the model's device (not counted as attack passes)."""
        with self.eval_mode():
            outs = [self(x[i : i + batch_size].to(self.device)) for i in range(0, len(x), batch_size)]
        return torch.cat(outs) if outs else torch.empty(0, self.n_classes, device=self.device)
