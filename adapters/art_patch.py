"""ART's adversarial patch over the shared model, every constructor argument explicit.

ART's `AdversarialPatchPyTorch` imports torchvision, which does not import beside this project's CPU torch; where
it does not, `AdversarialPatchNumpy` runs instead, which trains circular patches only (its mask is the disk
inscribed in the patch) and only targeted ones (it descends the loss towards the labels it is given). `native`
says which class runs here and why, or why neither can run the configuration; the bridge records both.

Both classes take scales as the patch's side over the image's smaller edge (the bridge's scales are areas: the
caller converts) and draw their random placements from numpy's and torch's global generators, seeded here.
"""

from __future__ import annotations

import importlib.util
from typing import Any

import numpy as np
import torch

from adapters.art_services import classifier
from bridge.models.shared import SharedModel

TORCH, NUMPY = "AdversarialPatchPyTorch", "AdversarialPatchNumpy"


def _torchvision() -> str | None:
    """Why torchvision cannot be used (None: it imports)."""
    if importlib.util.find_spec("torchvision") is None:
        return "torchvision is not installed"
    try:
        import torchvision  # noqa: F401
    except Exception as exc:  # a torchvision built for another torch fails at import
        return f"torchvision does not import ({type(exc).__name__})"
    return None


def native(shape: str, targeted: bool) -> tuple[str, str, str | None]:
    """(ART's class, why that class, why unsupported or None) for a patch of `shape`, targeted or not."""
    problem = _torchvision()
    if problem is None:
        return TORCH, "torchvision imports", None
    why = f"{problem}: ART's {TORCH} needs it"
    if shape != "circle":
        return NUMPY, why, f"ART's {NUMPY} (used because {why}) trains circular patches only"
    if not targeted:
        return NUMPY, why, f"ART's {NUMPY} (used because {why}) supports targeted patches only"
    return NUMPY, why, None


def _numpy_class(base: type) -> type:
    """ART's AdversarialPatchNumpy with its start value read as a float: ART (1.20) computes it from the estimator's
    float32 clip values, a numpy scalar its `reset_patch` refuses (AttributeError in the constructor)."""

    class Numpy(base):  # type: ignore[misc, valid-type]
        def reset_patch(self, initial_patch_value: Any) -> None:
            value = float(initial_patch_value) if np.isscalar(initial_patch_value) else initial_patch_value
            super().reset_patch(value)

    return Numpy


def generate(
    model: SharedModel,
    name: str,
    x: np.ndarray,
    labels: np.ndarray,
    *,
    shape: str,
    targeted: bool,
    target: int,
    sides: tuple[float, float],
    rotation: float,
    max_iter: int,
    learning_rate: float,
    batch_size: int,
    seed: int,
) -> tuple[np.ndarray, dict[str, Any]]:
    """ART's patch (C, P, P) trained on `x` (NCHW, the data's range) towards `labels` (targeted: the target class
    for every image; untargeted: the true labels), and the constructor arguments it ran with (for the record)."""
    from art.attacks.evasion import AdversarialPatchNumpy, AdversarialPatchPyTorch

    estimator = classifier(model)
    channels, lo, hi = model.input_shape[0], *model.bounds
    size = min(model.input_shape[1:])
    common = {"rotation_max": float(rotation), "scale_min": float(sides[0]), "scale_max": float(sides[1]),
              "learning_rate": float(learning_rate), "max_iter": int(max_iter), "batch_size": int(batch_size),
              "targeted": targeted, "verbose": False}  # fmt: skip
    if name == TORCH:
        kwargs = {**common, "distortion_scale_max": 0.0, "patch_shape": (channels, size, size), "patch_location": None,
                  "patch_type": shape, "optimizer": "Adam", "summary_writer": False}  # fmt: skip
        attack = AdversarialPatchPyTorch(estimator, **kwargs)
    else:
        kwargs = {**common, "target": int(target), "clip_patch": [(lo, hi)] * channels}
        attack = _numpy_class(AdversarialPatchNumpy)(estimator, **kwargs)
    np.random.seed(seed)
    torch.manual_seed(seed)
    onehot = np.eye(model.n_classes, dtype=np.float32)[labels]
    with model.eval_mode():
        patch, _ = attack.generate(x.astype(np.float32), onehot)
    return np.asarray(patch, dtype=np.float32), {"class": name, **kwargs}
