"""The scenario's model built: a zoo architecture trained here (PyTorch or Keras), or a network from outside.

Zoo models are trained on the train split and cached in `$ADVBRIDGE_CACHE/models` (default
`~/.cache/advbridge/models`) under a hash of what determines their weights (`cache_key`): a second run with
the same config loads the state dict instead of training. Many processes may share the cache: one trains a
key while the others wait on its lock and load what it wrote; files appear whole (written beside, then renamed)
and a file that fails to load is reported, deleted and trained again. With `normalize`, the model is
`Normalized(net, mean, std)`, so every toolkit feeds inputs in pixel units and eps is always in pixel units.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from typing import Any, Protocol, TypeVar

import torch
from filelock import FileLock, Timeout
from torch import nn

from bridge.core.errors import one_line
from bridge.core.identity import digest, file_sha256
from bridge.core.paths import cache_root, write_whole
from bridge.data.dataset import Dataset
from bridge.models.config import ModelConfig
from bridge.models.dp import privacy_spent, private_network, require_opacus
from bridge.models.errors import ModelError
from bridge.models.keras_zoo import KERAS_ZOO_VERSION
from bridge.models.sources import (
    Normalized,
    call_factory,
    check_outputs,
    load_checkpoint,
    load_mlflow,
    load_torchscript,
)
from bridge.models.training import train
from bridge.models.zoo import build


class Front(Protocol):
    """A layer a zoo network is trained behind because it changes the inputs (thermometer encoding does)."""

    kind: str

    def out_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]: ...

    def identity(self) -> dict[str, Any]: ...

    def wrap(self, net: nn.Module, bounds: tuple[float, float]) -> nn.Module: ...


def cache_dir() -> Path:
    return cache_root() / "models"


def cache_key(cfg: ModelConfig, data: Dataset, front: Front | None = None) -> str:
    """What determines a zoo model's trained weights: architecture, options, dropout, normalisation, the whole
    training config, the training data's fingerprint (not the name, which is only a label) and a layer the
    model is trained behind."""
    model = cfg.model_dump(mode="json", include={"arch", "options", "dropout", "normalize", "training"})
    if cfg.framework != "torch":  # keys of PyTorch models stay as they were before Keras models existed
        model["framework"] = cfg.framework
        model["zoo_version"] = KERAS_ZOO_VERSION
    if front is not None:
        model["defence"] = front.identity()
    return digest({**model, "data": data.fingerprint})


def build_model(
    cfg: ModelConfig,
    train_data: Dataset,
    progress: bool = False,
    log: Callable[[str], None] = print,
    device: torch.device | str = "cpu",
    front: Front | None = None,
    train_missing: bool = True,
) -> tuple[nn.Module, dict[str, Any]]:
    """The scenario's model on `device`, in eval mode, with its record for tracking.

    A zoo model without a checkpoint is trained on `train_data` (on `device`) or loaded from the cache; with
    `train_missing=False` (a worker building a model its driver trained) a model missing from the cache is an
    error, never trained again. With a `front` (a defence that changes the input, e.g. thermometer encoding), the
    network is built for the front's output and trained behind it, and the model returned is the wrapped one.
    The record holds config, hash, checkpoint (the weights file used, None for a factory without one),
    sha256 (of that file), trained, and after training loss_curve, train_accuracy_curve and train_time_s. A model
    trained with `training.dp` is built with the modules DP-SGD cannot train replaced (`dp.replaced_modules`) and its
    record has `dp` (epsilon at delta and how it was accounted), loaded or trained.
    """
    if cfg.framework == "keras":
        return build_keras_model(cfg, train_data, progress, log, train_missing)
    device = torch.device(device)
    torch.manual_seed(cfg.training.seed)  # initialisation (and dropout during training) is reproducible
    if cfg.torchscript is not None:
        net: nn.Module = load_torchscript(cfg.torchscript)
    elif cfg.mlflow is not None and cfg.factory is None and cfg.arch is None:
        net = load_mlflow(cfg.mlflow, trust_pickle=cfg.trust_pickle)
    elif cfg.factory is not None:
        net = call_factory(cfg.factory, cfg.factory_kwargs)
    else:
        shape = train_data.input_shape if front is None else front.out_shape(train_data.input_shape)
        net = build(cfg.arch, shape, train_data.n_classes, cfg.dropout, cfg.options)
    dp = cfg.training.dp if cfg.trained_here else None
    replaced: list[str] = []
    if dp is not None:
        require_opacus()
        net, replaced = private_network(net)
    if cfg.mlflow is not None and (cfg.factory is not None or cfg.arch is not None):
        load_mlflow(cfg.mlflow, net=net)  # a state dict logged to MLflow, for the network of factory or arch
    if cfg.checkpoint is not None:
        load_checkpoint(net, cfg.checkpoint)
    check_model(cfg, train_data, front)
    model = net
    if front is not None:
        model = front.wrap(net, train_data.bounds)
    if cfg.normalize is not None:
        model = Normalized(net, cfg.normalize.mean, cfg.normalize.std)
    model.to(device).eval()
    check_outputs(model, train_data, device)
    record: dict[str, Any] = {"config": cfg.model_dump(mode="json"), "trained": False}
    weights = cfg.torchscript or cfg.checkpoint
    if cfg.trained_here:
        key = cache_key(cfg, train_data, front)
        weights = cache_dir() / f"{cfg.arch}-{key}.pt"
        record.update(hash=key, data=train_data.fingerprint)

        def fit() -> nn.Module:
            log(_training_line(cfg, train_data, weights))
            record.update(trained=True, **train(model, train_data, cfg.training, progress, f"training {cfg.name}"))
            return net

        refuse = functools.partial(_refuse_training, cfg, weights, train_missing)
        _load_or_train(weights, functools.partial(_load_state, net), fit, _save_state, log, refuse)
    if dp is not None:  # a cached model's privacy is the configuration's: accounted again, as its training did
        n, batch, epochs = len(train_data), cfg.training.batch_size, cfg.training.epochs
        record["dp"] = {**(record.get("dp") or privacy_spent(dp, n, batch, epochs)), "replaced_modules": replaced}
    sha = file_sha256(weights) if weights is not None else None
    record.update(checkpoint=None if weights is None else str(weights), sha256=sha)
    record.setdefault("hash", _outside_identity(cfg, sha))
    return model, record


def build_keras_model(
    cfg: ModelConfig,
    train_data: Dataset,
    progress: bool = False,
    log: Callable[[str], None] = print,
    train_missing: bool = True,
) -> tuple[Any, dict[str, Any]]:
    """The Keras model of `cfg` (trained or loaded from the cache, or read from its .keras file) and its record,
    as `build_model` gives for PyTorch; normalisation is applied by `KerasModel`, not folded in here."""
    from bridge.models.keras_zoo import build_keras, load_keras_file, nhwc, train_keras

    record: dict[str, Any] = {"config": cfg.model_dump(mode="json"), "trained": False}
    if cfg.keras is not None:
        net, weights = load_keras_file(cfg.keras), cfg.keras
    else:
        key = cache_key(cfg, train_data)
        weights = cache_dir() / f"{cfg.arch}-keras-{key}.keras"
        record.update(hash=key, data=train_data.fingerprint)

        def fit() -> Any:
            cfg.training.check_input(train_data.input_shape)
            shape, classes = train_data.input_shape, train_data.n_classes
            fresh = build_keras(cfg.arch, shape, classes, cfg.dropout, cfg.options, cfg.training.seed)
            log(_training_line(cfg, train_data, weights))
            record.update(trained=True, **train_keras(fresh, train_data, cfg.training, progress))
            return fresh

        refuse = functools.partial(_refuse_training, cfg, weights, train_missing)
        net = _load_or_train(weights, load_keras_file, fit, lambda trained, path: trained.save(path), log, refuse)
    x = nhwc(train_data.x[:2])
    try:
        out = tuple(net(x, training=False).shape)
    except Exception as e:
        raise ModelError(f"the keras model fails on NHWC inputs of shape {x.shape}: {one_line(e, 200)}") from None
    if out != (2, train_data.n_classes):
        raise ModelError(
            f"the keras model returns {out} for inputs of shape {x.shape}; expected logits (2, {train_data.n_classes})"
        )
    sha = file_sha256(weights)
    record.update(checkpoint=str(weights), sha256=sha)
    record.setdefault("hash", _outside_identity(cfg, sha))
    return net, record


def check_model(cfg: ModelConfig, data: Dataset, front: Front | None = None) -> None:
    """What can be checked of `cfg` against the data without building the network (ModelError: one line)."""
    if front is not None and (not cfg.trained_here or cfg.normalize is not None):
        raise ModelError(
            f"{front.kind} changes the inputs: the model must be a zoo arch trained here, without normalize"
        )
    channels = data.input_shape[0]
    if cfg.normalize is not None and len(cfg.normalize.mean) != channels:
        raise ModelError(f"normalize has {len(cfg.normalize.mean)} channel(s) but the inputs have {channels}")
    if cfg.trained_here:
        try:
            cfg.training.check_input(data.input_shape)
        except ValueError as exc:
            raise ModelError(f"training: {exc}") from None
    if cfg.trained_here and cfg.training.dp is not None:
        require_opacus()
        if cfg.training.dp.delta >= 1 / len(data):
            raise ModelError(
                f"training.dp.delta {cfg.training.dp.delta:g} is not below 1/n = {1 / len(data):.3g} ({len(data)} "
                "training samples): releasing one training sample whole would meet such a guarantee"
            )


def model_identity(cfg: ModelConfig, train_data: Dataset, front: Front | None = None) -> str:
    """The `hash` of the model's record, known without building it: the cache key of a zoo model trained here,
    else its config with the sha256 of the file its weights come from (none for a factory without checkpoint)."""
    if cfg.trained_here:
        return cache_key(cfg, train_data, front)
    path = cfg.torchscript or cfg.checkpoint or cfg.keras
    return _outside_identity(cfg, file_sha256(path) if path is not None and path.is_file() else None)


def _outside_identity(cfg: ModelConfig, sha: str | None) -> str:
    # trust_pickle says how the weights may be loaded, not what they are (and leaves earlier identities as they were)
    return digest({"model": cfg.model_dump(mode="json", exclude={"name", "trust_pickle"}), "sha256": sha})


def _refuse_training(cfg: ModelConfig, weights: Path, train_missing: bool) -> None:
    """A worker never trains: the driver trains every model before any cell is scheduled."""
    if not train_missing:
        raise ModelError(
            f"model {cfg.name} is not in the model cache ({weights}); the driver trains it before cells run: "
            "a worker on another machine needs the same ADVBRIDGE_CACHE"
        )


T = TypeVar("T")


def _load_or_train(
    weights: Path,
    load: Callable[[Path], T],
    fit: Callable[[], T],
    save: Callable[[T, Path], None],
    log: Callable[[str], None],
    refuse: Callable[[], None],
) -> T:
    """The model in cache file `weights` (`load`), else the one `fit` trains, `save`d there; `refuse` raises where
    training is not allowed. One trainer per file across processes: the others wait on a lock beside it, then
    load what it wrote. A file that fails to load is reported in one line, deleted and trained again."""
    if weights.is_file():
        with suppress(Exception):  # files appear whole (`write_whole`); a damaged one is dealt with under the lock
            return load(weights)
    refuse()
    weights.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(f"{weights}.lock")
    try:
        held = lock.acquire(timeout=0)
    except Timeout:
        log(f"waiting for another process to train {weights.name}")
        held = lock.acquire()
    with held:
        if weights.is_file():
            try:
                return load(weights)
            except Exception as e:
                log(f"model cache file {weights} fails to load ({one_line(e, 200)}): deleted, training it again")
                weights.unlink()
        for stale in weights.parent.glob(f"{weights.stem}.*.tmp{weights.suffix}"):
            stale.unlink()  # left by a writer killed by a signal: only the lock's holder writes this key
        model = fit()
        write_whole(weights, functools.partial(save, model))
        return model


def _load_state(net: nn.Module, path: Path) -> None:
    """Load the state dict in `path` into `net`; `net` is left untouched by a file that is not one of its own."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    own = net.state_dict()
    if not isinstance(state, dict) or {k: v.shape for k, v in state.items()} != {k: v.shape for k, v in own.items()}:
        raise ValueError("its tensors are not those of this model")
    net.load_state_dict(state)


def _save_state(net: nn.Module, path: Path) -> None:
    """`net`'s state dict, on the CPU, in bytes set by the weights alone (given a path rather than an open file,
    torch.save would name the archive inside after the file)."""
    with path.open("wb") as f:
        torch.save({k: v.detach().cpu() for k, v in net.state_dict().items()}, f)


def _training_line(cfg: ModelConfig, data: Dataset, weights: Path) -> str:
    framework = " (Keras)" if cfg.framework == "keras" else ""
    where = f"{data.name} [{data.fingerprint}]"
    return f"training {cfg.name}{framework} on {where} ({cfg.training.epochs} epochs); cached as {weights.name}"
