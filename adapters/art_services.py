"""ART's services that are not evasion attacks: preprocessing defences, model-level metrics (CLEVER, empirical
robustness, loss sensitivity), the binary input detector and the adversarial trainers.

The bridge reaches these through importlib (bridge/defences/, bridge/studies/evasion/model_metrics.py,
bridge/models/training.py) and computes everything it reports from what they return. Like the attack adapter,
every constructor argument is written out: nothing is left to an ART default.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from adapters.art_adapter import ADAPTER, ModelView, pytorch_classifier
from bridge.attacks.adapter import Translation
from bridge.models.keras import KerasModel
from bridge.models.shared import SharedModel


def classifier(model: SharedModel | KerasModel) -> Any:
    """ART's estimator over the shared model, exactly as the attack adapter builds it for a cell."""
    return ADAPTER.classifier(model)


# ---- Preprocessing defences (ART implementations) ----
# bridge/defences/preprocessing.py folds a defence into the shared model; the classes below are ART's own
# implementations, used for the forward pass where the bridge has no torch version (jpeg, tvm) and for
# `bpda: estimate` (each class's `estimate_gradient`). Every constructor argument is written out: inputs are NCHW
# (channels_first), clip_values are the data's bounds, and the defence is applied at prediction only (never by
# ART's `fit`).

DefenceKwargs = Callable[[Any, tuple[float, float]], dict[str, Any]]

DEFENCES: dict[str, tuple[str, DefenceKwargs]] = {
    "feature_squeezing": (
        "FeatureSqueezing",
        lambda cfg, bounds: {
            "clip_values": bounds,
            "bit_depth": cfg.bit_depth,
            "apply_fit": False,
            "apply_predict": True,
        },
    ),
    "jpeg": (
        "JpegCompression",
        lambda cfg, bounds: {
            "clip_values": bounds,
            "quality": cfg.quality,
            "channels_first": True,
            "apply_fit": False,
            "apply_predict": True,
            "verbose": False,
        },
    ),
    "spatial_smoothing": (
        "SpatialSmoothing",
        lambda cfg, bounds: {
            "window_size": cfg.window_size,
            "channels_first": True,
            "clip_values": bounds,
            "apply_fit": False,
            "apply_predict": True,
        },
    ),
    # augmentation=False: every sample is replaced by its noisy copy (ratio then has no effect).
    "gaussian_noise": (
        "GaussianAugmentation",
        lambda cfg, bounds: {
            "sigma": cfg.sigma,
            "augmentation": False,
            "ratio": 1.0,
            "clip_values": bounds,
            "apply_fit": False,
            "apply_predict": True,
        },
    ),
    # TotalVarMin has no channels_first: `apply_numpy` hands it NHWC arrays.
    "tvm": (
        "TotalVarMin",
        lambda cfg, bounds: {
            "prob": cfg.prob,
            "norm": cfg.norm,
            "lamb": cfg.lamb,
            "solver": cfg.solver,
            "max_iter": cfg.max_iter,
            "clip_values": bounds,
            "apply_fit": False,
            "apply_predict": True,
            "verbose": False,
        },
    ),
    "thermometer": (
        "ThermometerEncoding",
        lambda cfg, bounds: {
            "clip_values": bounds,
            "num_space": cfg.num_space,
            "channels_first": True,
            "apply_fit": False,
            "apply_predict": True,
        },
    ),
}

# ART preprocessors that take HWC images whatever the data's layout.
CHANNELS_LAST_DEFENCES = frozenset({"TotalVarMin"})


def art_preprocessor(cfg: Any, bounds: tuple[float, float]) -> Any:
    """ART's preprocessor for the defence config `cfg` (bridge.defences), every constructor argument explicit."""
    name, kwargs_of = DEFENCES[cfg.kind]
    cls = getattr(importlib.import_module("art.defences.preprocessor"), name)
    kwargs = kwargs_of(cfg, (float(bounds[0]), float(bounds[1])))
    params = set(inspect.signature(cls).parameters)
    if missing := sorted(params - set(kwargs)):
        raise AssertionError(f"DEFENCES leaves {name}({', '.join(missing)}) to ART's defaults")
    try:
        return cls(**kwargs)
    except ValueError as e:
        raise ValueError(f"{cfg.kind} ({name}) with bounds {bounds}: {e}") from None


def apply_numpy(preprocessor: Any, x: np.ndarray, seed: int | None = None) -> np.ndarray:
    """The ART preprocessor on an NCHW batch, as float32 NCHW; `x` is copied (some classes clip in place) and
    clipped to the preprocessor's bounds. With `seed`, ART's draws from numpy's global generator (TotalVarMin's
    masks) come from that seed and numpy's global state is left as it was."""
    x = np.array(x, dtype=np.float32, copy=True)
    clip = getattr(preprocessor, "clip_values", None)
    if clip is not None:
        np.clip(x, clip[0], clip[1], out=x)
    channels_last = type(preprocessor).__name__ in CHANNELS_LAST_DEFENCES
    if channels_last:
        x = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    state = np.random.get_state() if seed is not None else None
    try:
        if seed is not None:
            np.random.seed(seed)
        out, _ = preprocessor(x)
    finally:
        if state is not None:
            np.random.set_state(state)
    if channels_last:
        out = out.transpose(0, 3, 1, 2)
    return np.ascontiguousarray(out, dtype=np.float32)


def estimate_gradient(preprocessor: Any, x: np.ndarray, grad: np.ndarray) -> np.ndarray:
    """ART's gradient estimate of the defence at `x` for the incoming gradient `grad` (BPDA), as float32."""
    out = preprocessor.estimate_gradient(np.asarray(x, dtype=np.float32), np.asarray(grad, dtype=np.float32))
    return np.ascontiguousarray(out, dtype=np.float32)


# ---- Model-level metrics and detectors (ART) ----
# ART's model-level metrics (art.metrics) and its BinaryInputDetector, every argument explicit, on the estimator
# `ArtAdapter.classifier` builds. bridge/studies/evasion/model_metrics.py and bridge/defences/detector.py reach these
# through importlib and compute everything they report from what these return.

# The bridge's norm names -> ART's `norm` values (CLEVER takes the perturbation norm; FGM the step's norm).
ART_NORMS: dict[str, float] = {"l1": 1, "l2": 2, "linf": np.inf}

# FastGradientMethod parameters that art.metrics.empirical_robustness cannot set: the estimator (passed
# positionally) and summary_writer (read-only after construction; ART's crafter is built with summary_writer=False).
_ER_UNSETTABLE = frozenset({"estimator", "summary_writer"})


def clever_targeted(
    classifier: Any,
    x: np.ndarray,
    target: int,
    nb_batches: int,
    batch_size: int,
    radius: float,
    norm: str,
    c_init: float,
    pool_factor: int,
) -> float:
    """ART's `clever_t` for one sample `x` (no batch axis) and one target class; draws from numpy's global RNG."""
    from art.metrics import clever_t

    return float(
        clever_t(
            classifier,
            x,
            target_class=int(target),
            nb_batches=nb_batches,
            batch_size=batch_size,
            radius=radius,
            norm=ART_NORMS[norm],
            c_init=c_init,
            pool_factor=pool_factor,
        )
    )


def fgsm_empirical_robustness(
    classifier: Any, x: np.ndarray, norm: str, eps: float, eps_step: float, batch_size: int
) -> float:
    """ART's `empirical_robustness` with attack 'fgsm': the minimal FGM step (eps_step, 2*eps_step, ... while
    <= eps) that changes the model's prediction, as mean ||x_adv - x||_p / ||x||_p over the samples it changes
    (0.0 when it changes none). ART attacks the model's predictions (no labels) and forces `minimal=True`."""
    from art.metrics import empirical_robustness

    params = {
        "norm": ART_NORMS[norm],
        "eps": eps,
        "eps_step": eps_step,
        "targeted": False,
        "num_random_init": 0,
        "batch_size": batch_size,
        "minimal": True,
    }
    missing = ADAPTER.signature("FastGradientMethod") - _ER_UNSETTABLE - set(params)
    if missing:
        left = ", ".join(sorted(missing))
        raise AssertionError(f"empirical robustness leaves FastGradientMethod({left}) to defaults")
    return float(empirical_robustness(classifier, x, attack_name="fgsm", attack_params=params))


def loss_sensitivities(classifier: Any, x: np.ndarray, y: np.ndarray, n_classes: int) -> np.ndarray:
    """Per-sample ART `loss_sensitivity` (the L2 norm of the input gradient of the loss), one sample per call.

    The estimator's loss is a mean over the batch it is given, so ART's batch-level value shrinks as 1/N with the
    batch size; one sample per call gives each sample's own gradient norm.
    """
    from art.metrics import loss_sensitivity

    one_hot = np.eye(n_classes, dtype=np.float32)[y]  # loss_gradient wants one-hot labels
    return np.array([float(loss_sensitivity(classifier, x[i : i + 1], one_hot[i : i + 1])) for i in range(len(x))])


def binary_input_detector(net: torch.nn.Module, input_shape: tuple[int, ...], lr: float, device: torch.device) -> Any:
    """ART's `BinaryInputDetector` over `net` (inputs -> 2 logits: clean, adversarial), trained with Adam at `lr`."""
    from art.defences.detector.evasion import BinaryInputDetector

    net.to(device)
    optimizer = torch.optim.Adam(net.parameters(), lr=lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
    # clip_values None: the detector is fitted and queried, never attacked
    classifier = pytorch_classifier(net, input_shape, 2, None, device, optimizer=optimizer)
    return BinaryInputDetector(detector=classifier)


def fit_binary_detector(detector: Any, x: np.ndarray, labels: np.ndarray, batch_size: int, epochs: int) -> None:
    """Train the detector on `x` with labels 0 (clean) / 1 (adversarial); shuffles with torch's global RNG."""
    detector.fit(
        x,
        labels,
        batch_size=batch_size,
        nb_epochs=epochs,
        training_mode=True,
        drop_last=False,
        scheduler=None,
        verbose=False,
    )


def detect_adversarial(detector: Any, x: np.ndarray, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """ART's `detect`: (flags, logits) with flags True where the detector calls the input adversarial."""
    report, flags = detector.detect(x, batch_size=batch_size)
    return np.asarray(flags, dtype=bool), np.asarray(report["predictions"], dtype=np.float64)


# ---- Adversarial trainers (ART) ----
# `trainer: art` in an adversarial training config: ART's own loops instead of the bridge's. Madry's PGD-AT is
# ART's AdversarialTrainer with ratio 1.0 (what AdversarialTrainerMadryPGD builds, whose eps=8 and eps_step=2
# defaults assume a 0-255 scale), with the attack built from the spec like any cell, every argument explicit;
# TRADES is AdversarialTrainerTRADESPyTorch with the same attack.
ART_TRAINERS = {"pgd_at": "AdversarialTrainer", "trades": "AdversarialTrainerTRADESPyTorch"}


def art_adversarial_training(
    net: torch.nn.Module,
    method: str,
    translation: Translation,
    beta: float | None,
    optimizer: torch.optim.Optimizer,
    label_smoothing: float,
    input_shape: tuple[int, ...],
    n_classes: int,
    bounds: tuple[float, float],
    x: np.ndarray,
    y: np.ndarray,
    epochs: int,
    batch_size: int,
) -> None:
    """Train `net` in place with ART's trainer for `method` (x in `bounds`, y class indices)."""
    from art.defences import trainer as art_trainers

    # A plain module around the net: ART's wrapper returns every child's output for an nn.Sequential, and the
    # TRADES trainer scores its accuracy on output [0] (the first layer's) instead of [-1], which crashes.
    module = ModelView(net, float32=False, softmax=False)
    loss = torch.nn.CrossEntropyLoss(label_smoothing=label_smoothing)
    device = next(net.parameters()).device
    classifier = pytorch_classifier(module, input_shape, n_classes, bounds, device, loss, optimizer)
    attack = ADAPTER.construct(translation.native, translation.kwargs, None, classifier)
    labels = np.eye(n_classes, dtype=np.float32)[y]
    if method == "pgd_at":
        trainer = art_trainers.AdversarialTrainer(classifier, attacks=attack, ratio=1.0)
        trainer.fit(x, labels, batch_size=batch_size, nb_epochs=epochs)
    else:
        trainer = art_trainers.AdversarialTrainerTRADESPyTorch(classifier, attack, beta)
        trainer.fit(x, labels, validation_data=None, batch_size=batch_size, nb_epochs=epochs, scheduler=None)
