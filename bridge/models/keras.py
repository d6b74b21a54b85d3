"""A Keras model as the shared model: the SharedModel interface over TensorFlow, for ART and Foolbox.

The bridge keeps its data as NCHW torch tensors in pixel units whatever the framework; `KerasModel` takes NCHW
inputs and transposes them to the NHWC layout Keras layers use, so every toolkit, every norm and every metric
sees the same tensors as for a PyTorch model. Forward and backward passes are counted in the call itself (a
custom-gradient identity on the logits counts the backward passes), the query budget is enforced there, and
the net always runs with `training=False`; while counting, TensorFlow functions run eagerly so that no pass
escapes the counters. Calls with torch tensors (the bridge's own evaluation and the
adapters' helper queries) return torch logits without gradients; calls with TensorFlow tensors or numpy
arrays (ART's TensorFlowV2Classifier, Foolbox's TensorFlowModel) return TensorFlow logits.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType
from typing import Any

import numpy as np
import torch

from bridge.models.shared import Counters, Observed, attack_loss

INSTALL_HINT = "pip install 'advbridge[tf]'"


class TensorFlowMissing(ImportError):
    """TensorFlow cannot be imported; str() is the one-line reason with the install command."""


def require_tensorflow() -> ModuleType:
    """TensorFlow, imported quietly, with GPU memory growth on (TF would otherwise take every GPU's memory)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        import tensorflow as tf
    except ImportError as e:
        raise TensorFlowMissing(f"TensorFlow is not installed ({INSTALL_HINT}): {e}") from None
    for gpu in tf.config.list_physical_devices("GPU"):
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError:  # already initialised: growth can only be set before the first op
            pass
    return tf


def tf_device(device: str) -> str:
    """The TensorFlow device for a scenario's `device`: auto -> the first GPU TF sees, else the CPU."""
    tf = require_tensorflow()
    gpus = tf.config.list_logical_devices("GPU")
    if device == "cpu" or (device == "auto" and not gpus):
        return "/CPU:0"
    index = 0 if device in ("auto", "cuda") else int(device.split(":")[1])
    if index >= len(gpus):
        raise RuntimeError(f"device {device}: TensorFlow sees {len(gpus)} GPU(s); install a CUDA build of tensorflow")
    return f"/GPU:{index}"


class KerasModel(Observed):
    """A Keras classifier (NHWC inputs, logits out) behind the SharedModel interface (NCHW inputs)."""

    framework = "keras"
    precision = "fp32"

    def __init__(
        self,
        net: Any,
        input_shape: tuple[int, ...],
        n_classes: int,
        bounds: tuple[float, float] = (0.0, 1.0),
        device: str = "auto",
        name: str = "model",
        normalize: tuple[list[float], list[float]] | None = None,
    ):
        self.tf = require_tensorflow()
        self.net = net
        self.input_shape = tuple(input_shape)
        self.n_classes = n_classes
        self.bounds = (float(bounds[0]), float(bounds[1]))
        self.name = name
        self.tf_device = tf_device(device)
        self.normalize = normalize

    @property
    def device(self) -> torch.device:
        """Where the bridge keeps this model's torch tensors: the CPU (TensorFlow holds its own copies)."""
        return torch.device("cpu")

    def __call__(self, x: Any, training: bool = False) -> Any:
        """Counted logits; torch in -> torch out (no gradient), TF tensor or numpy in -> TF tensor out."""
        if isinstance(x, torch.Tensor):
            with torch.no_grad():
                logits = self._forward(self.tf.convert_to_tensor(x.detach().cpu().numpy()))
            return torch.from_numpy(np.array(logits))
        return self._forward(self.tf.convert_to_tensor(x, dtype=self.tf.float32))

    def _forward(self, x: Any) -> Any:
        tf = self.tf
        with tf.device(self.tf_device):
            inputs = tf.transpose(x, (0, 2, 3, 1))
            if self.normalize is not None:
                mean, std = self.normalize
                inputs = (inputs - tf.constant(mean, tf.float32)) / tf.constant(std, tf.float32)
            logits = tf.cast(self.net(inputs, training=False), tf.float32)
            return self._observe(x, logits)

    def _observe(self, x: Any, logits: Any) -> Any:
        """Count the pass, apply the query budget and count the backward pass through these logits."""
        batch = int(x.shape[0])
        counters, blocked = self._forward_seen(batch)
        if counters is None:
            return logits
        if blocked:
            answer = self._budget.uninformative(torch.from_numpy(np.array(x)), torch.from_numpy(np.array(logits)))
            logits = logits * 0 + self.tf.constant(answer.numpy())  # zero gradient, as for PyTorch

        @self.tf.custom_gradient
        def counted(out: Any) -> Any:
            def grad(upstream: Any) -> Any:
                counters.backward(batch)
                return upstream

            return self.tf.identity(out), grad

        return counted(logits)

    @contextmanager
    def counting(self) -> Iterator[Counters]:
        """Count passes made inside the block, with every `tf.function` run eagerly: a compiled function calls
        the model once, when it is traced, so its later passes would escape the counters and the query budget
        (ART compiles its TensorFlowV2Classifier.predict, and APGD builds its own estimator)."""
        eager = self.tf.config.functions_run_eagerly()
        self.tf.config.run_functions_eagerly(True)
        try:
            with super().counting() as counters:
                yield counters
        finally:
            self.tf.config.run_functions_eagerly(eager)

    @contextmanager
    def eval_mode(self) -> Iterator[KerasModel]:
        """Keras layers take the mode per call, and every call here passes training=False."""
        yield self

    def predict(self, x: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
        """Logits for x, batched (not counted as attack passes)."""
        outs = [self(x[i : i + batch_size]) for i in range(0, len(x), batch_size)]
        return torch.cat(outs) if outs else torch.empty(0, self.n_classes)

    def loss_gradient(self, x: torch.Tensor, y: torch.Tensor, loss: str, batch_size: int = 128) -> torch.Tensor:
        """Gradient w.r.t. the inputs of the summed per-sample attack loss `loss`, as `SharedModel.loss_gradient`
        gives it: the loss's gradient w.r.t. the logits comes from the one `attack_loss` (torch), and TensorFlow
        pulls it back through the network."""
        tf = self.tf
        grads = []
        for i in range(0, len(x), batch_size):
            xs = tf.convert_to_tensor(x[i : i + batch_size].detach().cpu().numpy())
            with tf.GradientTape() as tape:
                tape.watch(xs)
                logits = self._forward(xs)
            z = torch.from_numpy(np.array(logits)).requires_grad_(True)
            (upstream,) = torch.autograd.grad(attack_loss(z, y[i : i + batch_size].cpu(), loss).sum(), z)
            pulled = tape.gradient(logits, xs, output_gradients=tf.constant(upstream.numpy()))
            grads.append(torch.from_numpy(np.array(pulled)))
        return torch.cat(grads) if grads else torch.empty_like(x)
