"""The scenario's model: a zoo architecture trained here (PyTorch or Keras), a factory of your own, a TorchScript
file, a Keras `.keras` file or an MLflow model.

Zoo models are trained on the train split and cached in `$ADVBRIDGE_CACHE/models` (default
`~/.cache/advbridge/models`) under a hash of what determines their weights (`cache_key`): a second run with
the same config loads the state dict instead of training. With `normalize`, the model is
`Normalized(net, mean, std)`, so every toolkit feeds inputs in pixel units and eps is always in pixel units.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import pickle
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, model_validator
from torch import nn

from bridge.data import Dataset
from bridge.keras_zoo import KERAS_ARCHITECTURES, KERAS_ZOO_VERSION, unsupported_training
from bridge.training import TrainingConfig, train
from bridge.zoo import ARCHITECTURES, build, validate_options

SOURCES = ("arch", "factory", "torchscript", "mlflow", "keras")
DEFAULT_ARCH = "small_cnn"


class ModelError(ValueError):
    """A model that cannot be built; str() is one line naming the problem."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class NormalizeConfig(Strict):
    """Per-channel mean and std, in pixel units, applied inside the model."""

    mean: list[float] = Field(min_length=1)
    std: list[PositiveFloat] = Field(min_length=1)

    @model_validator(mode="after")
    def _same_length(self) -> NormalizeConfig:
        if len(self.mean) != len(self.std):
            raise ValueError(f"normalize mean has {len(self.mean)} values but std has {len(self.std)}")
        return self


class ModelConfig(Strict):
    """Exactly one source: `arch` (a zoo architecture), `factory`, `torchscript`, `mlflow` or `keras` (a .keras
    file); small_cnn when none is given.

    `checkpoint` (a state dict) goes with `arch` (load it instead of training) or with `factory`; `options`,
    `dropout` and `training` are for zoo architectures, `factory_kwargs` for factories. `framework: keras` builds
    and trains the Keras version of `arch` (KERAS_ARCHITECTURES); a `keras` file implies it.
    """

    name: str | None = None  # default: the arch (with -keras for Keras), the factory's function or the file's stem
    framework: Literal["torch", "keras"] = "torch"
    arch: Literal[tuple(ARCHITECTURES)] | None = None  # type: ignore[valid-type]
    options: dict[str, Any] = {}
    dropout: float = Field(default=0.0, ge=0, lt=1)
    training: TrainingConfig = TrainingConfig()
    factory: str | None = Field(default=None, pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")  # package.module:function
    factory_kwargs: dict[str, Any] = {}
    checkpoint: Path | None = None
    torchscript: Path | None = None
    mlflow: str | None = Field(default=None, pattern=r"^(models|runs):/.+")  # a logged PyTorch model's URI
    keras: Path | None = None  # a Keras model saved with model.save("file.keras"): NHWC inputs, logits out
    normalize: NormalizeConfig | None = None

    @model_validator(mode="after")
    def _one_source(self) -> ModelConfig:
        given = [s for s in SOURCES if getattr(self, s) is not None]
        if len(given) > 1:
            raise ValueError(f"give exactly one of {', '.join(SOURCES)}; got {' and '.join(given)}")
        if not given:
            self.arch = DEFAULT_ARCH
        misplaced = {
            "options": self.arch is None,
            "dropout": self.arch is None,
            "training": self.arch is None or self.checkpoint is not None,
            "factory_kwargs": self.factory is None,
            "checkpoint": self.torchscript is not None or self.mlflow is not None or self.keras is not None,
        }
        for option, wrong in misplaced.items():
            if wrong and option in self.model_fields_set:
                raise ValueError(f"{option} does not apply to {self._source_text()}")
        if self.arch is not None:
            self.options = validate_options(self.arch, self.options)
        self._check_framework()
        if self.name is None:
            if self.mlflow is not None:
                self.name = self.mlflow.rstrip("/").split("/")[-1]
            elif self.keras is not None:
                self.name = self.keras.stem
            elif self.arch is not None:
                self.name = self.arch + ("-keras" if self.framework == "keras" else "")
            else:
                self.name = self.factory.split(":")[1] if self.factory else self.torchscript.stem
        return self

    def _check_framework(self) -> None:
        if self.keras is not None:
            if "framework" in self.model_fields_set and self.framework != "keras":
                raise ValueError("a keras file is a Keras model: framework must be keras (or left out)")
            self.framework = "keras"
        if self.framework != "keras":
            return
        if self.factory is not None or self.torchscript is not None or self.mlflow is not None:
            raise ValueError(f"framework keras takes arch or keras (a .keras file), not {self._source_text()}")
        if self.arch is not None and self.arch not in KERAS_ARCHITECTURES:
            raise ValueError(f"framework keras has arch {', '.join(KERAS_ARCHITECTURES)}; not {self.arch}")
        if self.checkpoint is not None:
            raise ValueError("checkpoint (a PyTorch state dict) does not apply to framework keras")
        if self.arch is not None and (reason := unsupported_training(self.training)):
            raise ValueError(f"training: {reason}")

    def _source_text(self) -> str:
        if self.keras is not None:
            return "a keras file"
        if self.torchscript is not None:
            return "a torchscript model"
        if self.mlflow is not None:
            return "an MLflow model"
        if self.factory is not None:
            return "a factory model"
        return "an arch with a checkpoint (it is not trained)"

    @property
    def trained_here(self) -> bool:
        """Whether build_model trains this model (or loads it from the cache)."""
        return self.arch is not None and self.checkpoint is None


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


def cache_dir() -> Path:
    return Path(os.environ.get("ADVBRIDGE_CACHE", Path.home() / ".cache" / "advbridge")) / "models"


def config_hash(config: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16]


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def cache_key(cfg: ModelConfig, data: Dataset, defence: Any = None) -> str:
    """What determines a zoo model's trained weights: architecture, options, dropout, normalisation, the whole
    training config, the training data's fingerprint (not the name, which is only a label) and a defence the
    model is trained behind."""
    model = cfg.model_dump(mode="json", include={"arch", "options", "dropout", "normalize", "training"})
    if cfg.framework != "torch":  # keys of PyTorch models stay as they were before Keras models existed
        model["framework"] = cfg.framework
        model["zoo_version"] = KERAS_ZOO_VERSION
    if defence is not None:
        model["defence"] = defence.model_dump(mode="json", exclude={"name"})
    return config_hash({**model, "data": data.fingerprint})


def _one_line(error: BaseException, limit: int = 200) -> str:
    lines = str(error).strip().splitlines()
    text = f"{type(error).__name__}: {lines[0] if lines else ''}"
    return text if len(text) <= limit else text[: limit - 3] + "..."


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
        raise ModelError(f"factory {spec}: importing {module_name} failed: {_one_line(e)}") from None
    except Exception as e:
        raise ModelError(f"factory {spec}: importing {module_name} failed: {_one_line(e)}") from None
    if not hasattr(module, func_name):
        raise ModelError(f"factory {spec}: module {module_name} has no {func_name}")
    func = getattr(module, func_name)
    if not callable(func):
        raise ModelError(f"factory {spec}: {func_name} is a {type(func).__name__}, not callable")
    try:
        net = func(**kwargs)
    except Exception as e:
        raise ModelError(f"factory {spec} failed: {_one_line(e)}") from None
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
        raise ModelError(f"checkpoint {path} could not be loaded: {_one_line(e)}") from None
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
        raise ModelError(f"mlflow model {uri} could not be loaded: {_one_line(e)}") from None
    if not isinstance(net, nn.Module):
        raise ModelError(f"mlflow model {uri} is a {type(net).__name__}, not a torch.nn.Module")
    return net


def load_torchscript(path: Path) -> Scripted:
    if not path.is_file():
        raise ModelError(f"torchscript file {path} not found")
    try:
        return Scripted(torch.jit.load(str(path), map_location="cpu"))
    except Exception as e:
        raise ModelError(f"torchscript file {path} could not be loaded: {_one_line(e)}") from None


def _check_outputs(model: nn.Module, data: Dataset, device: torch.device) -> None:
    """One forward pass on two training samples: a model of the wrong shape fails here, not inside a toolkit."""
    x = data.x[:2].to(device)
    try:
        with torch.no_grad():
            out = model(x)
    except Exception as e:
        raise ModelError(f"the model fails on inputs of shape {tuple(x.shape)}: {_one_line(e)}") from None
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (len(x), data.n_classes):
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        expected = (len(x), data.n_classes)
        raise ModelError(f"the model returns {got} for inputs of shape {tuple(x.shape)}; expected logits {expected}")


def build_model(
    cfg: ModelConfig,
    train_data: Dataset,
    progress: bool = False,
    log: Callable[[str], None] = print,
    device: torch.device | str = "cpu",
    defence: Any = None,
) -> tuple[nn.Module, dict[str, Any]]:
    """The scenario's model on `device`, in eval mode, with its record for tracking.

    A zoo model without a checkpoint is trained on `train_data` (on `device`) or loaded from the cache. With a
    `defence` (a `bridge.defences.Defence` that changes the input, e.g. thermometer encoding), the network is
    built for the defence's output and trained behind it, and the model returned is the defended one.
    The record holds config, hash, checkpoint (the weights file used, None for a factory without one),
    sha256 (of that file), trained, and after training loss_curve, train_accuracy_curve and train_time_s.
    """
    if cfg.framework == "keras":
        return build_keras_model(cfg, train_data, progress, log)
    device = torch.device(device)
    torch.manual_seed(cfg.training.seed)  # initialisation (and dropout during training) is reproducible
    if cfg.torchscript is not None:
        net: nn.Module = load_torchscript(cfg.torchscript)
    elif cfg.mlflow is not None:
        net = load_mlflow(cfg.mlflow)
    elif cfg.factory is not None:
        net = call_factory(cfg.factory, cfg.factory_kwargs)
    else:
        shape = train_data.input_shape if defence is None else defence.out_shape(train_data.input_shape)
        net = build(cfg.arch, shape, train_data.n_classes, cfg.dropout, cfg.options)
    if cfg.checkpoint is not None:
        load_checkpoint(net, cfg.checkpoint)
    model = net
    if defence is not None:
        from bridge.defences import defend

        if not cfg.trained_here or cfg.normalize is not None:
            raise ModelError(
                f"{defence.kind} changes the inputs: the model must be a zoo arch trained here, without normalize"
            )
        model = defend(net, defence, train_data.bounds)
    if cfg.normalize is not None:
        channels = train_data.input_shape[0]
        if len(cfg.normalize.mean) != channels:
            raise ModelError(f"normalize has {len(cfg.normalize.mean)} channel(s) but the inputs have {channels}")
        model = Normalized(net, cfg.normalize.mean, cfg.normalize.std)
    model.to(device).eval()
    _check_outputs(model, train_data, device)
    record: dict[str, Any] = {"config": cfg.model_dump(mode="json"), "trained": False}
    weights = cfg.torchscript or cfg.checkpoint
    if cfg.trained_here:
        key = cache_key(cfg, train_data, defence)
        weights = cache_dir() / f"{cfg.arch}-{key}.pt"
        record.update(hash=key, data=train_data.fingerprint)
        if weights.exists():
            net.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
        else:
            data_text = f"{train_data.name} [{train_data.fingerprint}]"
            log(f"training {cfg.name} on {data_text} ({cfg.training.epochs} epochs); cached as {weights.name}")
            record.update(trained=True, **train(model, train_data, cfg.training, progress, f"training {cfg.name}"))
            weights.parent.mkdir(parents=True, exist_ok=True)
            tmp = weights.with_suffix(f".{os.getpid()}.tmp")
            torch.save({k: v.detach().cpu() for k, v in net.state_dict().items()}, tmp)
            tmp.replace(weights)
    sha = file_sha256(weights) if weights is not None else None
    record.update(checkpoint=None if weights is None else str(weights), sha256=sha)
    record.setdefault("hash", config_hash({"model": cfg.model_dump(mode="json", exclude={"name"}), "sha256": sha}))
    return model, record


def build_keras_model(
    cfg: ModelConfig, train_data: Dataset, progress: bool = False, log: Callable[[str], None] = print
) -> tuple[Any, dict[str, Any]]:
    """The Keras model of `cfg` (trained or loaded from the cache, or read from its .keras file) and its record,
    as `build_model` gives for PyTorch; normalisation is applied by `KerasModel`, not folded in here."""
    from bridge.keras_zoo import build_keras, load_keras_file, nhwc, save_keras, train_keras

    record: dict[str, Any] = {"config": cfg.model_dump(mode="json"), "trained": False}
    if cfg.keras is not None:
        net, weights = load_keras_file(cfg.keras), cfg.keras
    else:
        key = cache_key(cfg, train_data)
        weights = cache_dir() / f"{cfg.arch}-keras-{key}.keras"
        record.update(hash=key, data=train_data.fingerprint)
        if weights.exists():
            net = load_keras_file(weights)
        else:
            cfg.training.check_input(train_data.input_shape)
            net = build_keras(cfg.arch, train_data.input_shape, train_data.n_classes, cfg.dropout, cfg.options)
            data_text = f"{train_data.name} [{train_data.fingerprint}]"
            log(f"training {cfg.name} (Keras) on {data_text} ({cfg.training.epochs} epochs); cached as {weights.name}")
            record.update(trained=True, **train_keras(net, train_data, cfg.training, progress))
            weights.parent.mkdir(parents=True, exist_ok=True)
            save_keras(net, weights)
    x = nhwc(train_data.x[:2])
    try:
        out = tuple(net(x, training=False).shape)
    except Exception as e:
        raise ModelError(f"the keras model fails on NHWC inputs of shape {x.shape}: {_one_line(e)}") from None
    if out != (2, train_data.n_classes):
        raise ModelError(
            f"the keras model returns {out} for inputs of shape {x.shape}; expected logits (2, {train_data.n_classes})"
        )
    sha = file_sha256(weights)
    record.update(checkpoint=str(weights), sha256=sha)
    record.setdefault("hash", config_hash({"model": cfg.model_dump(mode="json", exclude={"name"}), "sha256": sha}))
    return net, record
