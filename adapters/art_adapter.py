"""ART 1.20.1 adapter: the canonical attacks as ART evasion classes on a `PyTorchClassifier` of the shared model.

ART works on numpy arrays, so each batch goes to the host and back; the estimator wraps the SharedModel
itself (a plain nn.Module, so the bridge's counting hooks fire) and keeps it on its device. Untargeted
attacks always get the true labels: ART would otherwise attack the model's predictions. ART is imported
only when a class is needed.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from bridge.adapter import AttackFn, Entry, ToolkitAdapter, Translation, Unsupported
from bridge.shared_model import SharedModel
from bridge.spec import AttackSpec

# Line-search limits of ART's CW L2 (its defaults, written out): per iteration the step is halved or doubled
# at most this many times. The spec has no such knob; the other toolkits use Adam with a fixed rate.
CW_MAX_HALVING = 5
CW_MAX_DOUBLING = 5

Kwargs = Callable[[AttackSpec, int], dict[str, Any]]


def _targeted(spec: AttackSpec) -> bool:
    return spec.targeted != "none"


def _fgm(norm: float) -> Kwargs:
    """One step of exactly eps: `minimal=False` makes ART ignore eps_step, which is set to eps to say so."""

    def kwargs(spec: AttackSpec, n_classes: int) -> dict[str, Any]:
        return {
            "norm": norm,
            "eps": spec.eps,
            "eps_step": spec.eps,
            "targeted": _targeted(spec),
            "num_random_init": 0,
            "batch_size": spec.batch_size,
            "minimal": False,
            "summary_writer": False,
        }

    return kwargs


def _bim(spec: AttackSpec, n_classes: int) -> dict[str, Any]:
    return {
        "eps": spec.eps,
        "eps_step": spec.step_size,
        "max_iter": spec.steps,
        "targeted": _targeted(spec),
        "batch_size": spec.batch_size,
        "verbose": False,
    }


def _pgd(norm: float) -> Kwargs:
    """ART's own restarts: num_random_init = R random starts, 0 = start at the clean input."""

    def kwargs(spec: AttackSpec, n_classes: int) -> dict[str, Any]:
        return {
            "norm": norm,
            "eps": spec.eps,
            "eps_step": spec.step_size,
            "decay": None,
            "max_iter": spec.steps,
            "targeted": _targeted(spec),
            "num_random_init": spec.restarts if spec.random_start else 0,
            "batch_size": spec.batch_size,
            "random_eps": False,
            "summary_writer": False,
            "verbose": False,
        }

    return kwargs


def _mifgsm(spec: AttackSpec, n_classes: int) -> dict[str, Any]:
    return {
        "norm": np.inf,
        "eps": spec.eps,
        "eps_step": spec.step_size,
        "decay": spec.decay,
        "max_iter": spec.steps,
        "targeted": _targeted(spec),
        "batch_size": spec.batch_size,
        "verbose": False,
    }


def _cw(spec: AttackSpec, n_classes: int) -> dict[str, Any]:
    return {
        "confidence": spec.confidence,
        "targeted": _targeted(spec),
        "learning_rate": spec.step_size,
        "binary_search_steps": spec.binary_search_steps,
        "max_iter": spec.steps,
        "initial_const": spec.initial_const,
        "max_halving": CW_MAX_HALVING,
        "max_doubling": CW_MAX_DOUBLING,
        "batch_size": spec.batch_size,
        "verbose": False,
    }


def _deepfool(spec: AttackSpec, n_classes: int) -> dict[str, Any]:
    return {
        "max_iter": spec.steps,
        "epsilon": spec.overshoot,
        "nb_grads": spec.candidates if spec.candidates is not None else n_classes,
        "batch_size": spec.batch_size,
        "verbose": False,
    }


_RESTARTS = "A later restart replaces a sample only where ART's own check finds it adversarial."
_L2_PGD = (
    "Each step clips to the bounds and then projects onto the eps-ball (Foolbox and torchattacks project, then "
    "clip), so results differ near the box edges. The L2 random start is uniform in the ball (torchattacks: "
    f"Gaussian direction, U(0,1)*eps radius). {_RESTARTS}"
)
_L1_PGD = (
    "Each step moves only the coordinate with the largest |gradient| by eps_step (Foolbox: the L1-normalised "
    "gradient), clips, then projects by rescaling; it stalls once that coordinate sits at a bound, so it often "
    f"changes only a few inputs and spends far less than eps. The random start is uniform in the L1 ball. {_RESTARTS}"
)
_CW_NOTE = (
    "Plain gradient steps in tanh space with a per-sample line search (learning_rate is the initial step, halved "
    f"or doubled up to {CW_MAX_HALVING}/{CW_MAX_DOUBLING} times), not Adam, and a gradient that ignores the hinge, "
    "so a sample usually stays at its first adversarial point until the next binary-search step. Binary search "
    "as in Foolbox (torchattacks has none); samples never made adversarial come back unchanged."
)
_DEEPFOOL_NOTE = (
    "L2 only. Overshoot scales the total perturbation, x0 + (1+overshoot)*sum(steps), as in Foolbox "
    "(torchattacks: per step). nb_grads ranks classes by the clean prediction but takes the union of every "
    "sample's top classes over the batch. ART ignores labels and starts from the prediction, so the adapter "
    "runs it only on correctly classified samples (one extra forward pass) and returns the others unchanged."
)

ART_TABLE: dict[tuple[str, str], Entry] = {
    ("fgsm", "linf"): Entry("FastGradientMethod", _fgm(np.inf), ("ce",)),
    ("fgsm", "l2"): Entry("FastGradientMethod", _fgm(2), ("ce",)),
    ("bim", "linf"): Entry("BasicIterativeMethod", _bim, ("ce",)),
    ("pgd", "linf"): Entry("ProjectedGradientDescent", _pgd(np.inf), ("ce",), notes=_RESTARTS),
    ("pgd", "l2"): Entry("ProjectedGradientDescent", _pgd(2), ("ce",), notes=_L2_PGD),
    ("pgd", "l1"): Entry("ProjectedGradientDescent", _pgd(1), ("ce",), notes=_L1_PGD),
    ("mifgsm", "linf"): Entry(
        "MomentumIterativeMethod",
        _mifgsm,
        ("ce",),
        notes="Accumulates the L1-normalised gradient as Dong et al. and torchattacks do (Foolbox: its sign).",
    ),
    ("cw", "l2"): Entry("CarliniL2Method", _cw, ("margin",), notes=_CW_NOTE),
    ("deepfool", "l2"): Entry("DeepFool", _deepfool, ("logits",), targeted=False, notes=_DEEPFOOL_NOTE),
}


class ArtAdapter(ToolkitAdapter):
    """ART evasion attacks; numpy in and out, one PyTorchClassifier per built cell."""

    name = "art"
    table = ART_TABLE
    # The estimator: `estimator` in the gradient attacks, `classifier` in CW and DeepFool.
    wired = frozenset({"estimator", "classifier"})

    def native_class(self, native: str) -> type:
        return getattr(importlib.import_module("art.attacks.evasion"), native)

    def build(self, translation: Translation, spec: AttackSpec, model: SharedModel) -> AttackFn:
        native = self.native_class(translation.native)(self.classifier(model), **translation.kwargs)
        if translation.native == "DeepFool":
            return self._deepfool(native, model)
        targeted = _targeted(spec)

        def attack(x: torch.Tensor, y: torch.Tensor, targets: torch.Tensor | None) -> torch.Tensor:
            if targeted and targets is None:
                raise ValueError(f"{spec.label}: a targeted attack needs targets")
            labels = targets if targeted else y  # never None: ART would attack its predictions instead
            x_adv = native.generate(_numpy(x), y=_numpy(labels), **translation.call_kwargs)
            return self.output(x_adv, model)

        return attack

    @staticmethod
    def classifier(model: SharedModel) -> Any:
        """ART's estimator over the SharedModel, every argument explicit, on the model's own device.

        ART's 'gpu' means cuda:{current_device()} and it moves the model there, so the current device is set
        to the model's first.
        """
        from art.estimators.classification import PyTorchClassifier

        device = model.device
        if device.type == "cuda":
            torch.cuda.set_device(device)
        classifier = PyTorchClassifier(
            model=model,
            loss=torch.nn.CrossEntropyLoss(),
            input_shape=model.input_shape,
            nb_classes=model.n_classes,
            optimizer=None,
            use_amp=False,
            opt_level="O1",
            loss_scale="dynamic",
            channels_first=True,
            clip_values=model.bounds,
            preprocessing_defences=None,
            preprocessing=(0.0, 1.0),
            postprocessing_defences=None,
            device_type="gpu" if device.type == "cuda" else "cpu",
        )
        if model.device != device:
            raise RuntimeError(f"ART moved the model from {device} to {model.device}")
        return classifier

    def _deepfool(self, native: Any, model: SharedModel) -> AttackFn:
        """DeepFool on the correctly classified samples only; the others are already misclassified.

        ART's DeepFool takes no labels (it starts from the model's prediction) and scales every step by the
        width of the bounds, which is only right for inputs in a box of width 1.
        """
        lo, hi = model.bounds
        if hi - lo != 1.0:
            raise Unsupported(f"art DeepFool scales its steps by the bounds' width; needs width 1, got {model.bounds}")

        def attack(x: torch.Tensor, y: torch.Tensor, targets: torch.Tensor | None) -> torch.Tensor:
            with torch.no_grad():
                correct = model(x).argmax(1) == y
            x_adv = x.detach().clone()
            if correct.any():
                x_adv[correct] = self.output(native.generate(_numpy(x[correct])), model)
            return self.output(x_adv, model)

        return attack


def _numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy()


ADAPTER = ArtAdapter()
