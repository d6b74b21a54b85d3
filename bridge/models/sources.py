"""Networks that come from outside the zoo (a factory, a state dict, a TorchScript file, an MLflow model), and the
layers the bridge puts around a network (normalisation, a TorchScript shell), each checked with a one-line error."""

from __future__ import annotations

import importlib
import pickle
import tempfile
import zipfile
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


class Exported(nn.Module):
    """The module of a torch.export program behind a plain nn.Module: it refuses train() and eval() (it runs the
    graph it was exported with), so the mode is set here only."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module

    def train(self, mode: bool = True) -> Exported:
        self.training = mode
        return self

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
    _load_state_dict(net, path, f"checkpoint {path}", "save it with torch.save(model.state_dict(), path)")


def _load_state_dict(net: nn.Module, path: Path, what: str, save_hint: str) -> None:
    """Load the state dict in file `path` (`what`, in messages) into `net` with torch.load(weights_only=True)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise ModelError(f"{what} holds pickled objects, not a plain state dict: {save_hint}") from None
    except Exception as e:
        raise ModelError(f"{what} could not be loaded: {one_line(e, 200)}") from None
    if not isinstance(state, Mapping):
        raise ModelError(f"{what} holds a {type(state).__name__}, not a state dict: {save_hint}")
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
        raise ModelError(f"{what} does not match the model: {'; '.join(problems)}")
    net.load_state_dict(state)


MLFLOW_STATE_DICT = "state_dict.pth"  # the file mlflow.pytorch.log_state_dict writes
MLFLOW_WAYS_OUT = (
    "log a state dict (mlflow.pytorch.log_state_dict(model.state_dict(), path)) and give its network with factory "
    "or arch beside mlflow, or log a TorchScript model (torch.jit.script(model)), or set trust_pickle: true on this "
    "model if you trust its source"
)


def load_mlflow(uri: str, *, trust_pickle: bool = False, net: nn.Module | None = None) -> nn.Module:
    """A PyTorch model logged to MLflow (`models:/name/version`, `models:/m-<id>`, `runs:/<run>/<path>`), resolved
    against the tracking store in force (the scenario's) and downloaded to a temporary folder; no code from the
    model's files runs unless `trust_pickle`.

    With `net` (the network of `factory` or `arch`), the URI names a state dict (`mlflow.pytorch.log_state_dict`,
    or a file logged as an artifact): it is loaded into `net` with torch.load(weights_only=True) and `net` returned.
    Without, the URI names an MLflow PyTorch model: a TorchScript one is loaded with torch.jit.load; a pickled
    module (`log_model(module, serialization_format="pickle")`) and a torch.export archive (`pt2`, MLflow's
    default: torch.export.load unpickles records and evaluates expressions from the file) run code from the file
    when loaded, so they are refused unless `trust_pickle`.
    """
    import mlflow.artifacts

    with tempfile.TemporaryDirectory(prefix="advbridge-mlflow-") as tmp:
        try:
            local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=tmp))
        except Exception as e:
            raise ModelError(f"mlflow model {uri} could not be loaded: {one_line(e, 200)}") from None
        if net is not None:
            hint = "log it with mlflow.pytorch.log_state_dict(model.state_dict(), path)"
            _load_state_dict(net, _mlflow_state_dict(uri, local), f"mlflow model {uri}", hint)
            return net
        loaded = _load_mlflow_model(uri, local, trust_pickle)
    if not isinstance(loaded, nn.Module):
        raise ModelError(f"mlflow model {uri} is a {type(loaded).__name__}, not a torch.nn.Module")
    return loaded


def _mlflow_state_dict(uri: str, local: Path) -> Path:
    if local.is_file():
        return local
    if (local / MLFLOW_STATE_DICT).is_file():
        return local / MLFLOW_STATE_DICT
    if (local / "MLmodel").is_file():
        raise ModelError(
            f"mlflow model {uri} is a whole model, not a state dict: factory and arch take weights logged with "
            "mlflow.pytorch.log_state_dict(model.state_dict(), path); without them, give mlflow alone"
        )
    raise ModelError(f"mlflow model {uri} holds no state dict ({MLFLOW_STATE_DICT})")


def _load_mlflow_model(uri: str, local: Path, trust_pickle: bool) -> Any:
    """The model in `local`, an MLflow model folder; only TorchScript unless `trust_pickle`."""
    import yaml

    if local.is_file():
        raise ModelError(f"mlflow model {uri} is a file, not an MLflow model: a state dict file goes with factory/arch")
    if (local / MLFLOW_STATE_DICT).is_file():
        raise ModelError(f"mlflow model {uri} is a state dict: give the network it belongs to with factory or arch")
    try:
        meta = yaml.safe_load((local / "MLmodel").read_text())
    except FileNotFoundError:
        raise ModelError(f"mlflow model {uri} is not an MLflow model (it has no MLmodel file)") from None
    except Exception as e:
        raise ModelError(f"mlflow model {uri}: its MLmodel file could not be read: {one_line(e, 200)}") from None
    flavors = meta.get("flavors") if isinstance(meta, dict) else None
    flavor = flavors.get("pytorch") if isinstance(flavors, dict) else None
    if not isinstance(flavor, dict):
        found = ", ".join(flavors) if isinstance(flavors, dict) and flavors else "none"
        raise ModelError(f"mlflow model {uri} is not a PyTorch model (its flavors: {found})")
    data = (local / str(flavor.get("model_data", "data"))).resolve()
    if not data.is_relative_to(local.resolve()):
        raise ModelError(f"mlflow model {uri}: its model_data {flavor.get('model_data')!r} is outside the model")
    pickled, exported = (data, None) if data.is_file() else (data / "model.pth", data / "model.pt2")
    if pickled.is_file():  # what mlflow.pytorch.load_model reads first
        if _is_torchscript(pickled):
            try:
                return Scripted(torch.jit.load(str(pickled), map_location="cpu"))
            except Exception as e:
                raise ModelError(f"mlflow model {uri} (TorchScript) could not be loaded: {one_line(e, 200)}") from None
        if not trust_pickle:
            raise ModelError(
                f"mlflow model {uri} is a pickled PyTorch module: loading it unpickles the file, which runs any code "
                f"in it; {MLFLOW_WAYS_OUT}"
            )
        import mlflow.pytorch

        try:  # as before trust_pickle existed (into MLflow's own folder: code logged with the model stays importable)
            return mlflow.pytorch.load_model(uri, map_location="cpu")  # trusted: the scenario says trust_pickle
        except Exception as e:
            raise ModelError(f"mlflow model {uri} could not be loaded: {one_line(e, 200)}") from None
    if exported is not None and exported.is_file():
        if not trust_pickle:
            raise ModelError(
                f"mlflow model {uri} is a torch.export (pt2) archive: torch.export.load unpickles records and "
                f"evaluates expressions from the file, which can run any code; {MLFLOW_WAYS_OUT}"
            )
        try:
            return Exported(torch.export.load(str(exported)).module())
        except Exception as e:
            raise ModelError(f"mlflow model {uri} (pt2) could not be loaded: {one_line(e, 200)}") from None
    raise ModelError(f"mlflow model {uri} has no model file (data/model.pth or data/model.pt2)")


def _is_torchscript(path: Path) -> bool:
    """Whether `path` is a TorchScript archive (torch.jit.save): a zip with code/ and constants.pkl, which a
    pickled module (torch.save) lacks. Read as a zip listing only."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError):
        return False
    return any(n.endswith("/constants.pkl") for n in names) and any("/code/" in n for n in names)


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
