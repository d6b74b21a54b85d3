"""Networks that come from outside the zoo (a factory, a state dict, a TorchScript file, an MLflow model), and the
layers the bridge puts around a network (normalisation, a TorchScript shell), each checked with a one-line error."""

from __future__ import annotations

import importlib
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from bridge.core.errors import one_line
from bridge.data.dataset import Dataset
from bridge.models.errors import ModelError


class Normalized(nn.Module):
    """`net` applied to (x - mean) / std: the model takes inputs in pixel units, whatever `net` was trained on.

    A plain nn.Module (not nn.Sequential) so that toolkits walking Sequential children call it as a whole.
    """

    def __init__(self, net: nn.Module, mean: list[float], std: list[float]):
        super().__init__()
        self.net = net
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x - self.mean) / self.std)


class Scripted(nn.Module):
    """A TorchScript module behind a plain nn.Module: ScriptModules refuse the forward hooks that count passes."""

    def __init__(self, module: torch.jit.ScriptModule):
        super().__init__()
        self.module = module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x)


def _names(keys: list[str], limit: int = 3) -> str:
    more = f" (+{len(keys) - limit} more)" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


def call_factory(spec: str, kwargs: Mapping[str, Any]) -> nn.Module:
    """The module returned by `package.module:function` called with `kwargs`."""
    module_name, func_name = spec.split(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name is not None and (module_name + ".").startswith(e.name + "."):
            raise ModelError(
                f"factory {spec}: module {module_name} not found (is its directory on PYTHONPATH?)"
            ) from None
        raise ModelError(f"factory {spec}: importing {module_name} failed: {one_line(e, 200)}") from None
    except Exception as e:
        raise ModelError(f"factory {spec}: importing {module_name} failed: {one_line(e, 200)}") from None
    if not hasattr(module, func_name):
        raise ModelError(f"factory {spec}: module {module_name} has no {func_name}")
    func = getattr(module, func_name)
    if not callable(func):
        raise ModelError(f"factory {spec}: {func_name} is a {type(func).__name__}, not callable")
    try:
        net = func(**kwargs)
    except Exception as e:
        raise ModelError(f"factory {spec} failed: {one_line(e, 200)}") from None
    if not isinstance(net, nn.Module):
        raise ModelError(f"factory {spec} returned a {type(net).__name__}, not a torch.nn.Module")
    return net


def load_checkpoint(net: nn.Module, path: Path) -> None:
    """Load the state dict saved at `path` into `net` (weights only: no code from the file runs)."""
    if not path.is_file():
        raise ModelError(f"checkpoint {path} not found")
    save_hint = "save it with torch.save(model.state_dict(), path)"
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise ModelError(f"checkpoint {path} holds pickled objects, not a plain state dict: {save_hint}") from None
    except Exception as e:
        raise ModelError(f"checkpoint {path} could not be loaded: {one_line(e, 200)}") from None
    if not isinstance(state, Mapping):
        raise ModelError(f"checkpoint {path} holds a {type(state).__name__}, not a state dict: {save_hint}")
    expected = net.state_dict()
    problems = []
    if missing := [k for k in expected if k not in state]:
        problems.append(f"missing {_names(missing)}")
    if unexpected := [k for k in state if k not in expected]:
        problems.append(f"unexpected {_names(unexpected)}")
    shapes = [
        f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and isinstance(state[k], torch.Tensor) and state[k].shape != v.shape
    ]
    if shapes:
        problems.append(f"shape mismatch {_names(shapes)}")
    if problems:
        raise ModelError(f"checkpoint {path} does not match the model: {'; '.join(problems)}")
    net.load_state_dict(state)


def load_mlflow(uri: str) -> nn.Module:
    """A PyTorch model logged to MLflow (`models:/name/version`, `models:/m-<id>`, `runs:/<run>/<path>`), resolved
    against the scenario's tracking store."""
    import mlflow.pytorch

    try:
        net = mlflow.pytorch.load_model(uri, map_location="cpu")
    except Exception as e:
        raise ModelError(f"mlflow model {uri} could not be loaded: {one_line(e, 200)}") from None
    if not isinstance(net, nn.Module):
        raise ModelError(f"mlflow model {uri} is a {type(net).__name__}, not a torch.nn.Module")
    return net


def load_torchscript(path: Path) -> Scripted:
    if not path.is_file():
        raise ModelError(f"torchscript file {path} not found")
    try:
        return Scripted(torch.jit.load(str(path), map_location="cpu"))
    except Exception as e:
        raise ModelError(f"torchscript file {path} could not be loaded: {one_line(e, 200)}") from None


def check_outputs(model: nn.Module, data: Dataset, device: torch.device) -> None:
    """One forward pass on two training samples: a model of the wrong shape fails here, not inside a toolkit."""
    x = data.x[:2].to(device)
    try:
        with torch.no_grad():
            out = model(x)
    except Exception as e:
        raise ModelError(f"the model fails on inputs of shape {tuple(x.shape)}: {one_line(e, 200)}") from None
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (len(x), data.n_classes):
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        expected = (len(x), data.n_classes)
        raise ModelError(f"the model returns {got} for inputs of shape {tuple(x.shape)}; expected logits {expected}")
