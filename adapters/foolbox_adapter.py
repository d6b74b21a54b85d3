"""Foolbox 3.3.4 adapter: the canonical attacks as Foolbox classes, run on the shared model's own tensors.

Foolbox takes eps at call time (`epsilons=`), not in the constructor, so fixed-budget entries carry it in
`call`; minimum-norm attacks (CW, EAD, DeepFool, NewtonFool, Boundary, HopSkipJump) are called with
`epsilons=None` and return their unclipped result, the bridge applying any eps threshold itself. Foolbox is
imported only when a class is needed.

Foolbox defects worked around here (each has a test in tests/test_adapter_foolbox.py):
- CW and EAD return an all-zero image where they found nothing: the clean input is returned instead.
- NewtonFool divides 0 by 0 once a sample's gradient underflows to zero and returns NaN: the step is 0 there.
- HopSkipJump normalises its gradient estimate over the whole batch, not per sample, so its L2 steps shrink
  with the batch size: the estimate is normalised per sample, as in the paper.
- Boundary and HopSkipJump abort the whole batch when their init attack fails on one sample, and HopSkipJump
  loops forever once a query budget answers "not adversarial" everywhere: the adapter runs the init attack
  itself, attacks only the samples with an adversarial start, and stops the attack at the budget.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from bridge.attacks.adapter import (
    QUERY_BUDGET,
    RANDOM_START,
    RESTARTS,
    AttackFn,
    Entry,
    ToolkitAdapter,
    Translation,
    Unsupported,
    loss_is,
)
from bridge.attacks.spec import AttackSpec
from bridge.models.keras import KerasModel
from bridge.models.shared import SharedModel

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


def _ead(spec: AttackSpec, n: int) -> dict[str, Any]:
    return {
        "binary_search_steps": spec.binary_search_steps,
        "steps": spec.steps,
        "initial_stepsize": spec.step_size,
        "confidence": spec.confidence,
        "initial_const": spec.initial_const,
        "regularization": spec.beta,
        "decision_rule": spec.decision_rule,
        "abort_early": False,
    }


def _newtonfool(spec: AttackSpec, n: int) -> dict[str, Any]:
    return {"steps": spec.steps, "stepsize": spec.step_size}


def _default_init_attack() -> Any:
    """The init attack Boundary and HopSkipJump construct when given none, spelled out.

    Both build `LinearSearchBlendedUniformNoiseAttack(steps=50)` (boundary_attack.py, hop_skip_jump.py):
    up to 1000 uniform-noise draws per sample, then a 50-step linear blend towards the first adversarial
    draw. Its `distance` stays None, as there: it is only used by `__call__`, and the init runs via `run`.
    """
    attacks = importlib.import_module("foolbox.attacks")
    return attacks.LinearSearchBlendedUniformNoiseAttack(distance=None, directions=1000, steps=50)


def _boundary(spec: AttackSpec, n: int) -> dict[str, Any]:
    return {
        "init_attack": _default_init_attack(),
        "steps": spec.steps,
        "spherical_step": spec.spherical_step,
        "source_step": spec.source_step,
        "source_step_convergance": 1e-7,  # Foolbox's default: stop once every source step is below it
        "step_adaptation": spec.step_adaptation,
        "tensorboard": False,
        "update_stats_every_k": 10,  # Foolbox's default: spherical candidates checked every 10th step
    }


def _hopskipjump(spec: AttackSpec, n: int) -> dict[str, Any]:
    return {
        "init_attack": _default_init_attack(),
        "steps": spec.steps,
        "initial_gradient_eval_steps": spec.init_evals,
        "max_gradient_eval_steps": spec.max_evals,
        "stepsize_search": "geometric_progression",  # the paper's default; ART has only this one
        "gamma": 1.0,  # the paper's: binary-search threshold gamma/d^1.5 (L2), gamma/d^2 (Linf)
        "tensorboard": False,
        "constraint": spec.norm,
    }


_FGM_NOTE = "Foolbox's FGSM/FGM refuse a targeted criterion ('unsupported criterion')."
_L2_START = (
    RANDOM_START,
    "The L2 random start is uniform in the eps-ball (torchattacks: Gaussian direction, U(0,1)*eps radius).",
)
_L1_NOTE = "L1 steps follow the L1-normalised gradient and project by rescaling (not an exact L1 projection)."
_DEEPFOOL_NOTE = (
    "Overshoot scales the total perturbation, x0 + (1+overshoot)*sum(steps), as ART does; torchattacks applies it "
    "per step and ends on the boundary. Candidates are the top classes of the clean prediction (None = all).",
    (
        loss_is("ce"),
        "loss 'ce' (Foolbox 'crossentropy') equals 'logits': the log-sum-exp cancels in the class differences.",
    ),
)
_RESTARTS = (RESTARTS, "Restarts use attack.repeat(R), which keeps each sample's first successful run.")
_ZERO_FAILURES = (
    "Where no adversarial is found Foolbox returns an all-zero image; the adapter returns the clean input there "
    "instead."
)
_EAD_NOTE = (
    "FISTA with a square-root decaying step and shrinkage-thresholding by `regularization` (= beta), as in the "
    "paper; binary search over c. abort_early=False: every search step runs all `steps` updates. "
    + _ZERO_FAILURES
    + " (An EAD result that is exactly the all-zero image is therefore reported as a failure.)"
)
_NEWTONFOOL_NOTE = (
    "Untargeted only (Foolbox NewtonFool accepts only Misclassification). Foolbox squares both norms of the "
    "paper: delta = min(eta*||x0||^2*||g||^2, p - 1/K) and the step is delta*g/||g||^4 (ART and the paper: "
    "eta*||x0||*||g|| and delta*g/||g||^2), so its steps are far longer where ||g|| < 1. It stops moving a sample "
    "once the true label is no longer predicted. Where the gradient underflows to zero Foolbox computes 0/0 and "
    "returns NaN; the adapter takes no step there instead."
)
_DECISION_NOTE = (
    "The init attack is Foolbox's own default, LinearSearchBlendedUniformNoiseAttack(directions=1000, steps=50), "
    "run by the adapter: samples without an adversarial start (or already adversarial) are returned unchanged "
    "instead of failing the batch. The adapter's check of the starts costs one query per sample.",
    (
        QUERY_BUDGET,
        "With a query budget the attack stops when it is spent and each sample gets the closest adversarial the "
        "model confirmed.",
    ),
)
_BOUNDARY_NOTE = (
    "One Gaussian draw per step is shared by the whole batch (projected per sample), and the step sizes adapt "
    "to success statistics over the last 100 (spherical) and 30 (source) proposals, checked every "
    "update_stats_every_k=10 steps; the attack stops once every source step is below source_step_convergance=1e-7 "
    "(both Foolbox's defaults; ART's counterpart of the latter is min_epsilon, default 0).",
    _DECISION_NOTE,
)
_HSJ_NOTE = (
    "stepsize_search='geometric_progression' (from ||x_t - x0||/sqrt(t+1), halving) and gamma=1.0 are the paper's "
    "defaults. ART has no gamma: its binary-search threshold is 0.01/sqrt(d) (L2) or 0.01/d (Linf) instead of "
    "gamma/d^1.5 or gamma/d^2, which also scales its probe radius delta, and its step search starts at twice the "
    "distance. Foolbox normalises the gradient estimate over the whole batch; the adapter normalises it per "
    "sample, as in the paper. Foolbox clips to [0, 1] whatever the model's bounds, so other bounds are refused.",
    _DECISION_NOTE,
)

FOOLBOX_TABLE: dict[tuple[str, str], Entry] = {
    ("fgsm", "linf"): Entry("LinfFastGradientAttack", _fgm, ("ce",), targeted=False, call=_eps, notes=_FGM_NOTE),
    ("fgsm", "l2"): Entry("L2FastGradientAttack", _fgm, ("ce",), targeted=False, call=_eps, notes=_FGM_NOTE),
    ("fgsm", "l1"): Entry(
        "L1FastGradientAttack",
        _fgm,
        ("ce",),
        targeted=False,
        call=_eps,
        notes=(
            f"{_FGM_NOTE} The step is eps*g/||g||_1, spread over every pixel (then clipped to the bounds); ART's "
            "FGM with norm 1 puts all of eps on the pixel with the largest gradient (steepest L1 ascent)."
        ),
    ),
    ("bim", "linf"): Entry("LinfBasicIterativeAttack", _bim, ("ce",), call=_eps),
    ("bim", "l2"): Entry("L2BasicIterativeAttack", _bim, ("ce",), call=_eps),
    ("bim", "l1"): Entry("L1BasicIterativeAttack", _bim, ("ce",), call=_eps, notes=_L1_NOTE),
    ("pgd", "linf"): Entry("LinfProjectedGradientDescentAttack", _pgd, ("ce",), call=_eps, notes=_RESTARTS),
    ("pgd", "l2"): Entry(
        "L2ProjectedGradientDescentAttack",
        _pgd,
        ("ce",),
        call=_eps,
        notes=("Projects onto the eps-ball, then clips to the bounds (ART clips first).", _L2_START, _RESTARTS),
    ),
    ("pgd", "l1"): Entry(
        "L1ProjectedGradientDescentAttack",
        _pgd,
        ("ce",),
        call=_eps,
        notes=(_L1_NOTE, (RANDOM_START, "The L1 random start is uniform in the eps-ball."), _RESTARTS),
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
            "runs all `steps` Adam updates, as in ART. " + _ZERO_FAILURES
        ),
    ),
    ("ead", "l1"): Entry("EADAttack", _ead, ("margin",), call=_minimum, notes=_EAD_NOTE),
    ("deepfool", "l2"): Entry(
        "L2DeepFoolAttack", _deepfool, ("logits", "ce"), targeted=False, call=_minimum, notes=_DEEPFOOL_NOTE
    ),
    ("deepfool", "linf"): Entry(
        "LinfDeepFoolAttack", _deepfool, ("logits", "ce"), targeted=False, call=_minimum, notes=_DEEPFOOL_NOTE
    ),
    ("newtonfool", "l2"): Entry(
        "NewtonFoolAttack", _newtonfool, ("probability",), targeted=False, call=_minimum, notes=_NEWTONFOOL_NOTE
    ),
    ("boundary", "l2"): Entry("BoundaryAttack", _boundary, ("decision",), call=_minimum, notes=_BOUNDARY_NOTE),
    ("hopskipjump", "l2"): Entry("HopSkipJumpAttack", _hopskipjump, ("decision",), call=_minimum, notes=_HSJ_NOTE),
    ("hopskipjump", "linf"): Entry("HopSkipJumpAttack", _hopskipjump, ("decision",), call=_minimum, notes=_HSJ_NOTE),
}


# Attacks that return an all-zero image for a sample they could not attack.
_ZERO_SENTINEL = frozenset({"L2CarliniWagnerAttack", "EADAttack"})
# Decision-based attacks that need an adversarial start for every sample (run via `_run_decision`).
_DECISION = frozenset({"BoundaryAttack", "HopSkipJumpAttack"})


class FoolboxAdapter(ToolkitAdapter):
    """Runs Foolbox attacks on a `PyTorchModel` wrapping the shared model, with explicit criteria."""

    name = "foolbox"
    table = FOOLBOX_TABLE

    def native_class(self, native: str) -> type:
        attacks = importlib.import_module("foolbox.attacks")
        cls = getattr(attacks, native)  # AttributeError for unknown names: check() reports it
        if not (isinstance(cls, type) and issubclass(cls, attacks.base.Attack)):
            raise AttributeError(f"foolbox.attacks.{native} is not an attack class")
        return cls

    def native_call(self, spec: AttackSpec) -> dict[str, Any]:
        """Passthrough: eps at call time, as for the table's entries (None = minimum-norm, no early stop)."""
        return {"epsilons": spec.eps}

    def check(self, translation: Translation) -> None:
        super().check(translation)
        attacks = importlib.import_module("foolbox.attacks")
        fixed = issubclass(self.native_class(translation.native), attacks.base.FixedEpsilonAttack)
        if fixed and translation.call_kwargs.get("epsilons") is None:
            raise ValueError(f"foolbox {translation.native} is a fixed-epsilon attack: it needs eps")

    def build(self, translation: Translation, spec: AttackSpec, model: SharedModel | KerasModel) -> AttackFn:
        fb = importlib.import_module("foolbox")
        native = translation.native
        if native == "HopSkipJumpAttack" and tuple(model.bounds) != (0.0, 1.0):
            raise Unsupported(f"foolbox HopSkipJumpAttack clips to [0, 1]; the model's bounds are {model.bounds}")
        fmodel = _fmodel(fb, model)
        to_fw = _converter(model)
        attack = _patched(native, self.native_class(native))(**translation.kwargs)
        if (spec.restarts or 1) > 1:
            attack = attack.repeat(spec.restarts)
        minimum = spec.kind == "minimum"

        def run(x: torch.Tensor, y: torch.Tensor, targets: torch.Tensor | None) -> torch.Tensor:
            labels = self.goal(spec, y, targets).to(device=model.device, dtype=torch.int64)
            targeted = spec.targeted != "none"
            if native in _DECISION:
                init = translation.kwargs.get("init_attack") or _default_init_attack()
                norm = "linf" if translation.kwargs.get("constraint") == "linf" else "l2"
                x_adv = _run_decision(fb, attack, init, fmodel, to_fw, x, labels, targeted, norm, spec.max_queries)
                eps = translation.call_kwargs.get("epsilons")
                if eps is not None:  # a passthrough cell with eps: Foolbox's clipped result, as for the others
                    ep = importlib.import_module("eagerpy")
                    x_adv = attack.distance.clip_perturbation(ep.astensor(x), ep.astensor(x_adv), eps).raw
                return self.output(x_adv, model)
            criterion = _criterion(fb, to_fw(labels), targeted)
            raw, clipped, _ = attack(fmodel, to_fw(x), criterion, **translation.call_kwargs)
            x_adv = self.output(raw if minimum else clipped, model)
            if native in _ZERO_SENTINEL:
                x_adv = _restore_zero_failures(x, x_adv)
            return self.output(x_adv, model)

        return run


def _fmodel(fb: Any, model: SharedModel | KerasModel) -> Any:
    """Foolbox's model for the shared model: PyTorchModel, or TensorFlowModel for a Keras model (NCHW inputs)."""
    if model.framework == "keras":
        return _channels_first_tf_model(fb)(model, bounds=model.bounds, device=model.tf_device, preprocessing=None)
    return fb.PyTorchModel(model, bounds=model.bounds, device=model.device, preprocessing=None)


@functools.cache
def _channels_first_tf_model(fb: Any) -> type:
    class TensorFlowModel(fb.TensorFlowModel):
        """Foolbox's TensorFlowModel reports Keras' global data format (channels_last); the KerasModel takes NCHW."""

        @property
        def data_format(self) -> str:
            return "channels_first"

    return TensorFlowModel


def _converter(model: SharedModel | KerasModel) -> Callable[[torch.Tensor], Any]:
    """torch tensors -> the tensors Foolbox's model for `model` takes (TensorFlowModel raises on anything else)."""
    if model.framework == "keras":
        tf = importlib.import_module("tensorflow")
        return lambda t: tf.convert_to_tensor(t.detach().cpu().numpy())
    return lambda t: t


def _criterion(fb: Any, labels: Any, targeted: bool) -> Any:
    """`labels` as the bridge makes them: int64 (eagerpy compares TF tensors of different dtypes through
    np.find_common_type, which NumPy 2 removed, so Foolbox + TF with int32 labels crashes)."""
    return fb.criteria.TargetedMisclassification(labels) if targeted else fb.criteria.Misclassification(labels)


def _restore_zero_failures(x: torch.Tensor, x_adv: torch.Tensor) -> torch.Tensor:
    """Foolbox CW and EAD initialise their best result to zeros and return them where they found nothing.

    An all-zero row is that sentinel (CW's tanh parametrisation cannot reach the bound exactly; EAD could only
    by shrinking every pixel to 0), so it is replaced by the clean input, which is what ART and torchattacks
    return for a failed sample. The zero image is often adversarial itself, so Foolbox's own success flag
    counts these failures as successes.
    """
    failed = (x_adv.flatten(1) == 0).all(dim=1).view(-1, *[1] * (x.dim() - 1))
    return torch.where(failed, x, x_adv)


@functools.cache
def _patched(native: str, cls: type) -> type:
    """The class to construct: Foolbox's own, or a subclass that repairs one of its defects (same signature)."""
    if native == "NewtonFoolAttack":
        return _newtonfool_class(cls)
    if native == "HopSkipJumpAttack":
        return _hopskipjump_class(cls)
    return cls


def _newtonfool_class(base: type) -> type:
    ep = importlib.import_module("eagerpy")
    devutils = importlib.import_module("foolbox.devutils")
    fb_base = importlib.import_module("foolbox.attacks.base")
    criteria = importlib.import_module("foolbox.criteria")

    class NewtonFoolAttack(base):
        """Foolbox 3.3.4's NewtonFoolAttack.run, line for line, except for the guarded division in (5).

        Once a sample is adversarial its delta is 0; if its gradient has also underflowed to 0 (a saturated
        softmax) Foolbox computes 0/0 and the sample becomes NaN for good. A zero gradient means no step.
        """

        def run(self, model: Any, inputs: Any, criterion: Any, *, early_stop: Any = None, **kwargs: Any) -> Any:
            fb_base.raise_if_kwargs(kwargs)
            x, restore_type = ep.astensor_(inputs)
            criterion_ = fb_base.get_criterion(criterion)
            del inputs, criterion, kwargs
            fb_base.verify_input_bounds(x, model)
            N = len(x)
            if not isinstance(criterion_, criteria.Misclassification):
                raise ValueError("unsupported criterion")
            classes = criterion_.labels
            if classes.shape != (N,):
                raise ValueError(f"expected labels to have shape ({N},), got {classes.shape}")
            min_, max_ = model.bounds
            x_l2_norm = devutils.flatten(x.square()).sum(1)

            def loss_fun(x: Any) -> Any:
                logits = model(x)
                scores = ep.softmax(logits)
                pred_scores = scores[range(N), classes]
                return pred_scores.sum(), (scores, pred_scores)

            for _ in range(self.steps):
                _, (scores, pred_scores), gradients = ep.value_aux_and_grad(loss_fun, x)
                pred = scores.argmax(-1)
                num_classes = scores.shape[-1]
                gradients_l2_norm = devutils.flatten(gradients.square()).sum(1)
                a = self.stepsize * x_l2_norm * gradients_l2_norm
                b = pred_scores - 1.0 / num_classes
                delta = ep.minimum(a, b)
                is_not_adversarial = (pred == classes).float32()
                delta *= is_not_adversarial
                # (5) Foolbox: a = delta / gradients_l2_norm.square(), which is 0/0 = NaN for a zero gradient
                denominator = gradients_l2_norm.square()
                safe = ep.where(denominator > 0, denominator, ep.ones_like(denominator))
                a = devutils.atleast_kd(ep.where(denominator > 0, delta / safe, 0.0), gradients.ndim)
                x -= a * gradients
                x = ep.clip(x, min_, max_)
            return restore_type(x)

    return NewtonFoolAttack


def _hopskipjump_class(base: type) -> type:
    ep = importlib.import_module("eagerpy")
    devutils = importlib.import_module("foolbox.devutils")

    class HopSkipJumpAttack(base):
        """Foolbox's HopSkipJumpAttack with the gradient estimate normalised per sample.

        Foolbox divides the batch's estimates by one norm taken over the whole batch (`ep.norms.l2` without
        an axis), so each sample's unit direction has norm about 1/sqrt(batch size) and its L2 steps shrink
        with the batch. Renormalising each sample gives the paper's unit direction; Linf takes the sign, which
        either scaling leaves unchanged.
        """

        def approximate_gradients(self, is_adversarial: Any, x_advs: Any, steps: int, delta: Any) -> Any:
            grad = super().approximate_gradients(is_adversarial, x_advs, steps, delta)
            norms = ep.norms.l2(devutils.flatten(grad), axis=-1)
            return grad / (devutils.atleast_kd(norms, grad.ndim) + 1e-12)

    return HopSkipJumpAttack


class _BudgetSpent(Exception):
    """The next query would pass the cell's query budget."""


class _Guard:
    """A Foolbox model in front of `fmodel` for the decision-based attacks: counts queries, tracks the best.

    It stops the attack (raises `_BudgetSpent`) before a query would pass `max_queries` x batch size, the
    point past which the bridge answers uninformatively, and keeps for each sample the closest input that the
    model confirmed adversarial (queries with one row per attacked sample, the attacks' only kind).
    """

    def __init__(self, fmodel: Any, x: torch.Tensor, labels: torch.Tensor, targeted: bool, norm: str, limit: float):
        self.fmodel, self.x, self.labels, self.targeted, self.norm, self.limit = (
            fmodel,
            x,
            labels,
            targeted,
            norm,
            limit,
        )
        self.used = 0
        self.rows = torch.arange(len(x), device=x.device)  # the batch rows the attack is working on
        self.best = x.clone()
        self.best_dist = torch.full((len(x),), float("inf"), device=x.device)

    @property
    def bounds(self) -> Any:
        return self.fmodel.bounds

    def __call__(self, inputs: Any) -> Any:
        n = len(inputs)
        if self.used + n > self.limit:
            raise _BudgetSpent
        self.used += n
        outputs = self.fmodel(inputs)
        if n == len(self.rows):
            self._track(_raw(inputs), _raw(outputs))
        return outputs

    def adversarial(self, logits: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        pred = logits.argmax(1)
        return pred == self.labels[rows] if self.targeted else pred != self.labels[rows]

    def _track(self, inputs: torch.Tensor, logits: torch.Tensor) -> None:
        rows = self.rows
        delta = (inputs.detach() - self.x[rows]).flatten(1)
        dist = delta.abs().amax(1) if self.norm == "linf" else delta.norm(dim=1)
        better = self.adversarial(logits.detach(), rows) & (dist < self.best_dist[rows])
        self.best[rows[better]] = inputs.detach()[better]
        self.best_dist[rows[better]] = dist[better]


def _raw(tensor: Any) -> torch.Tensor:
    """A Foolbox result (eagerpy, torch or TF tensor) as a torch tensor."""
    tensor = tensor.raw if hasattr(tensor, "raw") else tensor
    return tensor if isinstance(tensor, torch.Tensor) else torch.from_numpy(np.asarray(tensor))


def _run_decision(
    fb: Any,
    attack: Any,
    init: Any,
    fmodel: Any,
    to_fw: Callable[[torch.Tensor], Any],
    x: torch.Tensor,
    labels: torch.Tensor,
    targeted: bool,
    norm: str,
    max_queries: int | None,
) -> torch.Tensor:
    """Boundary / HopSkipJump on the samples that have an adversarial start; the others come back unchanged.

    Foolbox runs the init attack itself and raises for the whole batch if it failed on any sample; here the
    init runs first (exactly as Foolbox calls it), its starts are checked with one query, and the attack gets
    only the samples whose start is adversarial and differs from the input (an input that is already
    adversarial is its own minimum). With a budget, the attack stops when it is spent and each sample gets
    the closest adversarial the model confirmed; Foolbox's HopSkipJump would otherwise loop forever once
    every answer is "not adversarial".
    """
    limit = float("inf") if max_queries is None else max_queries * len(x)
    guard = _Guard(fmodel, x, labels, targeted, norm, limit)
    x_adv = x.clone()
    try:
        start = _raw(init.run(guard, to_fw(x), _criterion(fb, to_fw(labels), targeted), early_stop=None))
        todo = guard.adversarial(_raw(guard(to_fw(start))), guard.rows) & (start != x).flatten(1).any(1)
        if todo.any():
            guard.rows = todo.nonzero().flatten()
            criterion = _criterion(fb, to_fw(labels[todo]), targeted)
            raw, _, _ = attack(guard, to_fw(x[todo]), criterion, epsilons=None, starting_points=to_fw(start[todo]))
            x_adv[todo] = _raw(raw)
    except _BudgetSpent:
        return guard.best
    return x_adv


ADAPTER = FoolboxAdapter()
