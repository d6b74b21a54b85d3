"""Keras versions of zoo architectures, their training, and `.keras` files brought by the user.

The architectures mirror the PyTorch builders of the same name layer for layer, with PyTorch's batch-norm
momentum and epsilon (Keras' default momentum 0.99 leaves the running statistics far from the data after a short
training) and Keras' default initialisation, so one scenario can compare the same architecture trained in both
frameworks. They take NHWC inputs, as Keras models do; `KerasModel` feeds them.
Training follows the model's `TrainingConfig` where Keras means the same thing, and refuses the options it
cannot reproduce (see `unsupported_training`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from bridge.core.errors import one_line
from bridge.data.dataset import Dataset
from bridge.models.errors import ModelError
from bridge.models.keras import require_tensorflow
from bridge.models.training import TrainingConfig

KERAS_ARCHITECTURES = ("small_cnn", "resnet18")
KERAS_ZOO_VERSION = 3  # part of the cache key: bump it when a builder changes, so cached weights are not reused


def _pool_matrix(size_in: int, size_out: int) -> np.ndarray:
    """PyTorch's adaptive average pooling along one axis as a matrix: output i averages inputs
    [floor(i*n/m), ceil((i+1)*n/m))."""
    matrix = np.zeros((size_out, size_in), np.float32)
    for i in range(size_out):
        start, end = (i * size_in) // size_out, -(-((i + 1) * size_in) // size_out)
        matrix[i, start:end] = 1.0 / (end - start)
    return matrix


@functools.cache
def _adaptive_pool_layer(keras: Any) -> type:
    """AdaptiveAvgPool2d for Keras (NHWC), differentiable (ResizeArea has no gradient) and saved by name."""

    @keras.saving.register_keras_serializable(package="advbridge")
    class AdaptiveAvgPool2D(keras.layers.Layer):
        def __init__(self, height: int, width: int, **kwargs: Any):
            super().__init__(**kwargs)
            self.height, self.width = height, width

        def call(self, x: Any) -> Any:
            rows = _pool_matrix(x.shape[1], self.height)
            cols = _pool_matrix(x.shape[2], self.width)
            return keras.ops.einsum("ih,jw,nhwc->nijc", rows, cols, x)

        def get_config(self) -> dict[str, Any]:
            return {**super().get_config(), "height": self.height, "width": self.width}

    return AdaptiveAvgPool2D


def _small_cnn(keras: Any, input_shape: tuple[int, ...], n_classes: int, dropout: float) -> Any:
    c, h, w = input_shape
    ph, pw = min(h // 2, 8), min(w // 2, 8)
    layers = keras.layers
    stack = [
        keras.Input((h, w, c)),
        layers.Conv2D(32, 3, padding="same", activation="relu"),
        layers.Conv2D(64, 3, padding="same", activation="relu"),
        layers.MaxPooling2D(2),
    ]
    if (ph, pw) != (h // 2, w // 2):  # as the PyTorch builder's adaptive pool, for inputs larger than 16x16
        stack.append(_adaptive_pool_layer(keras)(ph, pw))
    stack += [
        layers.Flatten(),
        layers.Dense(128, activation="relu"),
        layers.Dropout(dropout),
        layers.Dense(n_classes),
    ]
    return keras.Sequential(stack, name="small_cnn")


def _resnet18(keras: Any, input_shape: tuple[int, ...], n_classes: int, dropout: float, width: int = 64) -> Any:
    c, h, w = input_shape
    layers = keras.layers

    def conv_bn(x: Any, filters: int, kernel: int, stride: int) -> Any:
        x = layers.Conv2D(filters, kernel, stride, padding="same", use_bias=False)(x)
        return layers.BatchNormalization(momentum=0.9, epsilon=1e-5)(x)  # PyTorch's momentum 0.1 and eps

    def block(x: Any, filters: int, stride: int) -> Any:
        out = layers.ReLU()(conv_bn(x, filters, 3, stride))
        out = conv_bn(out, filters, 3, 1)
        shortcut = x if stride == 1 and x.shape[-1] == filters else conv_bn(x, filters, 1, stride)
        return layers.ReLU()(layers.Add()([out, shortcut]))

    inputs = keras.Input((h, w, c))
    x = layers.ReLU()(conv_bn(inputs, width, 3, 1))
    for i, filters in enumerate((width, 2 * width, 4 * width, 8 * width)):
        x = block(x, filters, 1 if i == 0 else 2)
        x = block(x, filters, 1)
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dropout(dropout)(x)
    return keras.Model(inputs, layers.Dense(n_classes)(x), name="resnet18")


BUILDERS: dict[str, Callable[..., Any]] = {"small_cnn": _small_cnn, "resnet18": _resnet18}


def build_keras(
    arch: str, input_shape: tuple[int, ...], n_classes: int, dropout: float, options: dict, seed: int = 0
) -> Any:
    """The untrained Keras `arch` for (C, H, W) inputs; options as for the PyTorch builder (resnet18: width).
    Its initial weights are drawn from `seed` (as PyTorch's zoo seeds torch before building)."""
    require_tensorflow()
    import keras

    keras.utils.set_random_seed(seed)
    return BUILDERS[arch](keras, tuple(input_shape), n_classes, dropout, **options)


def unsupported_training(cfg: TrainingConfig) -> str | None:
    """Why Keras training cannot follow `cfg` as PyTorch would, or None."""
    if cfg.augment != "none":
        return f"augment {cfg.augment} is implemented for PyTorch models only"
    if cfg.weight_decay and cfg.optimizer != "adamw":
        return (
            f"weight_decay with optimizer {cfg.optimizer}: PyTorch adds it to the gradient (L2), Keras decouples it; "
            "use optimizer adamw (decoupled in both)"
        )
    extras = [k for k in ("adversarial", "gaussian_augmentation", "mixup", "cutmix") if getattr(cfg, k, None)]
    if extras:
        return f"{', '.join(extras)} is implemented for PyTorch models only"
    return None


def _optimizer(keras: Any, cfg: TrainingConfig) -> Any:
    if cfg.optimizer == "sgd":
        return keras.optimizers.SGD(learning_rate=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov)
    if cfg.optimizer == "adam":
        return keras.optimizers.Adam(learning_rate=cfg.lr)
    return keras.optimizers.AdamW(learning_rate=cfg.lr, weight_decay=cfg.weight_decay)


def _epoch_lr(cfg: TrainingConfig, epoch: int) -> float:
    """The learning rate of `epoch`, as the PyTorch schedulers (stepped once per epoch) give it."""
    if cfg.schedule == "cosine":
        return cfg.lr * (1 + np.cos(np.pi * epoch / cfg.epochs)) / 2
    if cfg.schedule == "step":
        return cfg.lr * cfg.gamma ** (epoch // (cfg.step_size or max(cfg.epochs // 3, 1)))
    if cfg.schedule == "multistep":
        return cfg.lr * cfg.gamma ** sum(epoch >= m for m in cfg.milestones)
    return cfg.lr


def nhwc(x: Any) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(x).transpose(0, 2, 3, 1))


def train_keras(net: Any, data: Dataset, cfg: TrainingConfig, progress: bool = False) -> dict[str, Any]:
    """Train `net` on `data` with softmax cross-entropy (label smoothing as in PyTorch); seeded and deterministic."""
    import time

    import keras

    start = time.perf_counter()
    keras.utils.set_random_seed(cfg.seed)
    net.compile(
        optimizer=_optimizer(keras, cfg),
        loss=keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=cfg.label_smoothing),
        metrics=["accuracy"],
    )
    y = np.eye(data.n_classes, dtype=np.float32)[data.y.numpy()]
    schedule = keras.callbacks.LearningRateScheduler(lambda epoch, _lr: float(_epoch_lr(cfg, epoch)))
    history = net.fit(
        nhwc(data.x),
        y,
        batch_size=cfg.batch_size,
        epochs=cfg.epochs,
        shuffle=True,
        callbacks=[schedule],
        verbose=1 if progress else 0,
    )
    return {
        "loss_curve": [float(v) for v in history.history["loss"]],
        "train_accuracy_curve": [float(v) for v in history.history["accuracy"]],
        "train_time_s": time.perf_counter() - start,
    }


def load_keras_file(path: Path) -> Any:
    """A Keras model saved with `model.save('file.keras')`; safe mode (no arbitrary code from the file)."""
    require_tensorflow()
    import keras

    _adaptive_pool_layer(keras)  # registered, so files of zoo models that use it load in safe mode
    if not path.is_file():
        raise ModelError(f"keras file {path} not found")
    if path.suffix != ".keras":
        raise ModelError(f"keras file {path}: expected a .keras file (save it with model.save('model.keras'))")
    try:
        return keras.saving.load_model(path, compile=False, safe_mode=True)
    except Exception as e:
        raise ModelError(f"keras file {path} could not be loaded: {one_line(e, 200)}") from None
