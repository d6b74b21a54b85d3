"""The thief network: built fresh and seeded (exactly as `build_model` initialises the same config, so the thief and
its true-label baseline start from the same weights), and rebuilt later from a task's stored result (for
re-aggregation or as the surrogate of a transfer attack)."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import torch
from torch import nn

from bridge.engine.result import Result
from bridge.models.config import ModelConfig
from bridge.models.sources import Normalized
from bridge.models.zoo import build

PREFIX = "thief/"  # the thief's state dict in a result's arrays


def fresh_thief(cfg: ModelConfig, input_shape: tuple[int, ...], n_classes: int) -> nn.Module:
    """The untrained thief of `cfg` (a zoo arch), its initialisation seeded with the training seed."""
    torch.manual_seed(cfg.training.seed)
    net = build(cfg.arch, input_shape, n_classes, cfg.dropout, cfg.options)
    return net if cfg.normalize is None else Normalized(net, cfg.normalize.mean, cfg.normalize.std)


def weights(net: nn.Module) -> dict[str, np.ndarray]:
    """The state dict as result arrays."""
    return {PREFIX + k: v.detach().cpu().numpy() for k, v in net.state_dict().items()}


def state_bytes(net: nn.Module) -> bytes:
    """The state dict as a `torch.load(weights_only=True)` file."""
    buffer = io.BytesIO()
    torch.save({k: v.detach().cpu() for k, v in net.state_dict().items()}, buffer)
    return buffer.getvalue()


def card(cfg: ModelConfig, input_shape: tuple[int, ...], n_classes: int) -> dict[str, Any]:
    """What rebuilding the thief needs besides its weights (`thief.json` beside `thief.pt`)."""
    return {
        "model": cfg.model_dump(mode="json", exclude_unset=True),
        "input_shape": list(input_shape),
        "n_classes": n_classes,
    }


def load_thief(result: Result) -> nn.Module:
    """The stolen model of an `extract` result, in eval mode on the CPU."""
    cfg = ModelConfig.model_validate(result.params["thief"])
    net = fresh_thief(cfg, tuple(result.row["input_shape"]), int(result.row["n_classes"]))
    state = {k.removeprefix(PREFIX): torch.from_numpy(v) for k, v in result.arrays.items() if k.startswith(PREFIX)}
    net.load_state_dict(state)
    return net.eval()
