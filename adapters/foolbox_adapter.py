"""Foolbox 3.3.4 adapter: the canonical attacks as Foolbox classes, run on the shared model's own tensors.

Foolbox takes eps at call time (`epsilons=`), not in the constructor, so fixed-budget entries carry it in
`call`; minimum-norm attacks (CW, DeepFool) are called with `epsilons=None` and return their unclipped
result, the bridge applying any eps threshold itself. Foolbox is imported only when a class is needed.
"""

from __future__ import annotations

import importlib
from typing import Any

import torch

from bridge.adapter import AttackFn, Entry, ToolkitAdapter, Translation
from bridge.shared_model import SharedModel
from bridge.spec import AttackSpec

# Spec loss -> Foolbox DeepFool `loss` value.
_DEEPFOOL_LOSS = {"logits": "logits", "ce": "crossentropy"}


def _steps(spec: AttackSpec) -> dict[str, Any]:
    """Iterative fixed-budget attacks: absolute step, with the relative one made consistent with it.

    Foolbox uses `abs_stepsize` when it is set; `rel_stepsize` is passed as step/eps so that both are
    explicit and say the same thing.
    """
    return {
        "abs_stepsize": spec.step_size,
        "rel_stepsize": spec.step_size / spec.eps,
        "steps": spec.steps,
    }


def _eps(spec: AttackSpec) -> dict[str, Any]:
    return {"epsilons": spec.eps}


def _minimum(spec: AttackSpec) -> dict[str, Any]:
    """Minimum-norm attacks run without a bound (no early stop at eps); the bridge thresholds afterwards."""
    return {"epsilons": None}


def _fgm(spec: AttackSpec, n: int) -> dict[str, Any]:
    return {"random_start": False}


def _bim(spec: AttackSpec, n: int) -> dict[str, Any]:
    return {**_steps(spec), "random_start": False}


def _pgd(spec: AttackSpec, n: int) -> dict[str, Any]:
    return {**_steps(spec), "random_start": spec.random_start}


def _mifgsm(spec: AttackSpec, n: int) -> dict[str, Any]:
    return {**_steps(spec), "momentum": spec.decay, "random_start": False}


def _cw(spec: AttackSpec, n: int) -> dict[str, Any]:
    return {
        "binary_search_steps": spec.binary_search_steps,
        "steps": spec.steps,
        "stepsize": spec.step_size,
        "confidence": spec.confidence,
        "initial_const": spec.initial_const,
        "abort_early": False,
    }


def _deepfool(spec: AttackSpec, n: int) -> dict[str, Any]:
    return {
        "steps": spec.steps,
        "candidates": spec.candidates,
        "overshoot": spec.overshoot,
        "loss": _DEEPFOOL_LOSS[spec.loss],
    }


_FGM_NOTE = "Foolbox's FGSM/FGM refuse a targeted criterion ('unsupported criterion')."
_L2_START = "The L2 random start is uniform in the eps-ball (torchattacks: Gaussian direction, U(0,1)*eps radius)."
_L1_NOTE = "L1 steps follow the L1-normalised gradient and project by rescaling (not an exact L1 projection)."
_DEEPFOOL_NOTE = (
    "Overshoot scales the total perturbation, x0 + (1+overshoot)*sum(steps), as ART does; torchattacks applies it "
    "per step and ends on the boundary. Candidates are the top classes of the clean prediction (None = all). "
    "loss 'ce' (Foolbox 'crossentropy') equals 'logits': the log-sum-exp cancels in the class differences."
)
_RESTARTS = "Restarts use attack.repeat(R), which keeps each sample's first successful run."

FOOLBOX_TABLE: dict[tuple[str, str], Entry] = {
    ("fgsm", "linf"): Entry("LinfFastGradientAttack", _fgm, ("ce",), targeted=False, call=_eps, notes=_FGM_NOTE),
    ("fgsm", "l2"): Entry("L2FastGradientAttack", _fgm, ("ce",), targeted=False, call=_eps, notes=_FGM_NOTE),
    ("bim", "linf"): Entry("LinfBasicIterativeAttack", _bim, ("ce",), call=_eps),
    ("bim", "l2"): Entry("L2BasicIterativeAttack", _bim, ("ce",), call=_eps),
    ("bim", "l1"): Entry("L1BasicIterativeAttack", _bim, ("ce",), call=_eps, notes=_L1_NOTE),
    ("pgd", "linf"): Entry("LinfProjectedGradientDescentAttack", _pgd, ("ce",), call=_eps, notes=_RESTARTS),
    ("pgd", "l2"): Entry(
        "L2ProjectedGradientDescentAttack",
        _pgd,
        ("ce",),
        call=_eps,
        notes=f"Projects onto the eps-ball, then clips to the bounds (ART clips first). {_L2_START} {_RESTARTS}",
    ),
    ("pgd", "l1"): Entry(
        "L1ProjectedGradientDescentAttack",
        _pgd,
        ("ce",),
        call=_eps,
        notes=f"{_L1_NOTE} The L1 random start is uniform in the eps-ball. {_RESTARTS}",
    ),
    ("mifgsm", "linf"): Entry(
        "LinfMomentumIterativeFastGradientMethod",
        _mifgsm,
        ("ce",),
        call=_eps,
        notes=(
            "Foolbox accumulates the SIGN of each gradient into the momentum (g = decay*g + sign(grad)), not the "
            "L1-normalised gradient of Dong et al., ART and torchattacks, so its steps differ."
        ),
    ),
    ("cw", "l2"): Entry(
        "L2CarliniWagnerAttack",
        _cw,
        ("margin",),
        call=_minimum,
        notes=(
            "Binary search over c as in the paper (torchattacks has none). abort_early=False: every search step "
            "runs all `steps` Adam updates, as in ART. Where no adversarial is found Foolbox returns an all-zero "
            "image; the adapter returns the clean input there instead."
        ),
    ),
    ("deepfool", "l2"): Entry(
        "L2DeepFoolAttack", _deepfool, ("logits", "ce"), targeted=False, call=_minimum, notes=_DEEPFOOL_NOTE
    ),
    ("deepfool", "linf"): Entry(
        "LinfDeepFoolAttack", _deepfool, ("logits", "ce"), targeted=False, call=_minimum, notes=_DEEPFOOL_NOTE
    ),
}


class FoolboxAdapter(ToolkitAdapter):
    """Runs Foolbox attacks on a `PyTorchModel` wrapping the shared model, with explicit criteria."""

    name = "foolbox"
    table = FOOLBOX_TABLE

    def native_class(self, native: str) -> type:
        return getattr(importlib.import_module("foolbox.attacks"), native)

    def build(self, translation: Translation, spec: AttackSpec, model: SharedModel) -> AttackFn:
        fb = importlib.import_module("foolbox")
        fmodel = fb.PyTorchModel(model, bounds=model.bounds, device=model.device, preprocessing=None)
        attack = self.native_class(translation.native)(**translation.kwargs)
        if (spec.restarts or 1) > 1:
            attack = attack.repeat(spec.restarts)
        minimum = spec.kind == "minimum"
        cw = translation.native == "L2CarliniWagnerAttack"

        def run(x: torch.Tensor, y: torch.Tensor, targets: torch.Tensor | None) -> torch.Tensor:
            labels = (y if targets is None else targets).to(device=model.device, dtype=torch.int64)
            if targets is None:
                criterion = fb.criteria.Misclassification(labels)
            else:
                criterion = fb.criteria.TargetedMisclassification(labels)
            raw, clipped, _ = attack(fmodel, x, criterion, **translation.call_kwargs)
            x_adv = raw if minimum else clipped
            if cw:
                x_adv = _restore_cw_failures(x, x_adv)
            return self.output(x_adv, model)

        return run


def _restore_cw_failures(x: torch.Tensor, x_adv: torch.Tensor) -> torch.Tensor:
    """Foolbox CW initialises its best result to zeros and returns them where it found nothing.

    An all-zero row is that sentinel (CW's tanh parametrisation cannot reach the bound exactly), so it is
    replaced by the clean input, which is what ART and torchattacks return for a failed sample.
    """
    failed = (x_adv.flatten(1) == 0).all(dim=1).view(-1, *[1] * (x.dim() - 1))
    return torch.where(failed, x, x_adv)


ADAPTER = FoolboxAdapter()
