"""Differentially private training (DP-SGD, Abadi et al. 2016) through Opacus, an optional extra.

`DPConfig` is `model.training.dp`. A network is made trainable per sample before it is trained or loaded
(`private_network`: Opacus's `ModuleValidator.fix` turns batch norm, which mixes the samples of a batch, into
group norm), so cached weights load into the same modules. `Private` wraps the module, optimizer and data for
training: Poisson-sampled batches of the training tensors (each sample drawn with probability 1 / batches per
epoch), every per-sample gradient clipped to `max_grad_norm` and Gaussian noise of std
`noise_multiplier * max_grad_norm` added to their sum. Epsilon at `delta` is the RDP accountant's
(`privacy_spent` gives it again for a model loaded from the cache: it depends on the configuration alone).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import torch
from pydantic import Field
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from bridge.core.schema import Strict
from bridge.data.dataset import Dataset
from bridge.models.errors import ModelError

INSTALL_HINT = "pip install 'advbridge[dp]' (make install installs it)"
ACCOUNTANT = "rdp"  # Renyi DP (Mironov 2017): the accountant of the DP-SGD literature's reported epsilons


class DPConfig(Strict):
    """DP-SGD's parameters, all required: there is no neutral default for a privacy guarantee."""

    noise_multiplier: float = Field(gt=0)  # std of the noise / max_grad_norm
    max_grad_norm: float = Field(gt=0)  # the L2 bound every per-sample gradient is clipped to
    delta: float = Field(gt=0, lt=1)  # of (epsilon, delta)-DP; should be well below 1 / (training samples)


class OpacusMissing(ModelError):
    """Opacus cannot be imported; str() is the one-line reason with the install command."""


def require_opacus() -> ModuleType:
    try:
        import opacus
    except ImportError as e:
        raise OpacusMissing(f"training.dp needs Opacus, which is not installed ({INSTALL_HINT}): {e}") from None
    return opacus


def private_network(net: nn.Module) -> tuple[nn.Module, list[str]]:
    """`net` with the modules DP-SGD cannot train per sample replaced (a copy when any is), and a line per module
    replaced ("<path>: BatchNorm2d -> GroupNorm"); ModelError when Opacus cannot fix some module."""
    from opacus.validators import ModuleValidator

    before = {name: type(m).__name__ for name, m in net.named_modules()}
    if ModuleValidator.validate(net, strict=False):
        net = ModuleValidator.fix(net)
    if problems := ModuleValidator.validate(net, strict=False):
        raise ModelError(f"training.dp: Opacus cannot train this network per sample: {problems[0]}")
    after = {name: type(m).__name__ for name, m in net.named_modules()}
    return net, [f"{name}: {kind} -> {after[name]}" for name, kind in before.items() if after.get(name, kind) != kind]


def privacy_spent(dp: DPConfig, n_samples: int, batch_size: int, epochs: int) -> dict[str, Any]:
    """What `Private` records after `epochs` over `n_samples`: the accountant's epsilon at delta, the sampling
    rate and the number of noisy steps (batches per epoch x epochs, empty Poisson batches included)."""
    from opacus.accountants import RDPAccountant

    batches = math.ceil(n_samples / batch_size)
    accountant = RDPAccountant()
    accountant.history = [(dp.noise_multiplier, 1 / batches, batches * epochs)]
    return _record(dp, accountant.get_epsilon(dp.delta), 1 / batches, batches * epochs)


def _record(dp: DPConfig, epsilon: float, sample_rate: float, steps: int) -> dict[str, Any]:
    return {**dp.model_dump(), "epsilon": epsilon, "accountant": ACCOUNTANT, "sample_rate": sample_rate, "steps": steps}


@dataclass
class Private:
    """The module, optimizer and Poisson-sampling loader Opacus made for one DP training."""

    engine: Any
    module: nn.Module
    optimizer: torch.optim.Optimizer
    loader: DataLoader
    dp: DPConfig

    @classmethod
    def make(
        cls,
        net: nn.Module,
        optimizer: torch.optim.Optimizer,
        data: Dataset,
        dp: DPConfig,
        batch_size: int,
        generator: torch.Generator,
    ) -> Private:
        """Opacus's wrappers around `net` (in train mode), `optimizer` and the tensors of `data`; the batches and
        the noise are drawn from generators seeded by `generator`."""
        require_opacus()
        from opacus import PrivacyEngine

        device = next(net.parameters()).device
        seeds = torch.randint(0, 2**62, (2,), generator=generator).tolist()
        loader = DataLoader(
            TensorDataset(data.x, data.y), batch_size=batch_size, generator=torch.Generator().manual_seed(seeds[0])
        )
        engine = PrivacyEngine(accountant=ACCOUNTANT, secure_mode=False)
        module, optimizer, loader = engine.make_private(
            module=net, optimizer=optimizer, data_loader=loader, noise_multiplier=dp.noise_multiplier,
            max_grad_norm=dp.max_grad_norm, batch_first=True, loss_reduction="mean", poisson_sampling=True,
            clipping="flat", noise_generator=torch.Generator(device).manual_seed(seeds[1]), grad_sample_mode="hooks",
        )  # fmt: skip
        return cls(engine, module, optimizer, loader, dp)

    def batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """One epoch of Poisson-sampled batches (of varying size, possibly empty)."""
        yield from self.loader

    def finish(self) -> dict[str, Any]:
        """Remove Opacus's hooks and per-sample gradients from the network; the privacy spent (`dp` of the record)."""
        self.module.to_standard_module()
        sample_rate = 1 / len(self.loader)
        steps = sum(n for _, _, n in self.engine.accountant.history)
        return _record(self.dp, self.engine.get_epsilon(self.dp.delta), sample_rate, steps)
