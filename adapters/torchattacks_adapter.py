"""torchattacks 3.5.1 behind the bridge's attack interface.

torchattacks needs no wrapper: each class takes the SharedModel itself and reads the device from its
parameters. It clamps every result to [0,1] (hard-coded), so it only runs models with those bounds.
Targeted attacks use `set_mode_targeted_by_label`, so the bridge's targets are passed as the labels;
untargeted attacks always receive the true labels. PGD restarts run as a `MultiAttack` of R copies; APGD,
APGD-T and Square take their own `n_restarts`.

Two rows choose their class from the spec (`VARIANTS`): PGD Linf runs `PGD` for the CE loss and `UPGD` for
DLR or margin; EAD runs `EADEN` or `EADL1` by decision rule. The table holds the default class.

torchattacks defects worked around here (each has a test in tests/test_adapter_torchattacks.py):
- UPGD defaults to decay=1.0, which is MI-FGSM, not PGD: decay=0.0 is passed.
- AutoAttack runs its sub-attacks with 10 steps (the original uses 100) and n_classes=10: the standard
  ensemble is built from torchattacks' APGD, APGDT, FAB and Square with the original's constants instead.
- Untargeted JSMA targets (label+1) % 10: JSMA always runs targeted, with the bridge's targets.
- EAD optimises `nn.Parameter(images)`, which shares the reference image's storage, so its first gradient step
  moves the reference: the L1/L2 terms and the shrinkage then pull towards x0 - lr*grad, not x0, results are
  dense and leave [0,1]. EADEN and EADL1 are run with the reference kept apart (`_ead_with_fixed_reference`).
- EAD's success test adds kappa to the columns of every label in the batch (`output[:, labels]`), and its
  early-abort check divides by steps // 10: confidence must be 0, and abort_early is off.
- UPGD's untargeted margin loss indexes a CPU identity matrix with the labels: refused off the CPU.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any

import torch

from bridge.attacks.adapter import (
    RANDOM_START,
    RESTARTS,
    TARGETED,
    AttackFn,
    Entry,
    ToolkitAdapter,
    Translation,
    Unsupported,
    loss_is,
)
from bridge.attacks.spec import AttackSpec
from bridge.models.shared import SharedModel

UNIT_BOUNDS = (0.0, 1.0)

# Spec norm -> torchattacks `norm` value.
NORMS = {"linf": "Linf", "l2": "L2"}

# Classes whose restarts run as MultiAttack copies; APGD, APGDT and Square take `n_restarts` themselves.
COPY_RESTARTS = frozenset({"PGD", "PGDL2", "UPGD"})

# The standard AutoAttack's constants (fra31/auto-attack, autoattack.py, version='standard').
AA_STEPS = 100
AA_SQUARE_QUERIES = 5000
AA_SQUARE_P_INIT = 0.8
AA_RHO = 0.75

RESTARTS_NOTE = (
    RESTARTS,
    "restarts > 1 run as torchattacks.MultiAttack of R copies: each restart attacks only the samples still "
    "classified as their label, and samples no restart fooled come back as the clean input, not the last attempt.",
)

# APGD, APGD-T and Square restart by themselves (n_restarts).
OWN_RESTARTS = (RESTARTS, "Restarts (n_restarts) attack only the samples not yet fooled.")

APGD_NOTE = (
    "The initial step is 2*eps (hard-coded), then halves per sample when the loss oscillates (rho) or stalls; "
    "the start is a random point on the eps-sphere (Linf: max coordinate eps).",
    OWN_RESTARTS,
    "It returns the last adversarial iterate where it succeeds and the clean input where it fails. eot_iter=1: "
    "no expectation over transformations (deterministic model).",
)


def _no_targeted_restarts(spec: AttackSpec) -> str | None:
    """MultiAttack counts success as prediction != label, so with targets as labels it inverts success."""
    if spec.targeted != "none" and (spec.restarts or 1) > 1:
        return (
            "torchattacks MultiAttack (its restart mechanism) counts a sample as fooled when the prediction differs "
            "from the label it was given; with targets it discards every restart that reached its target and returns "
            "the clean input, so targeted restarts > 1 are not supported"
        )
    return None


def _cw_unsupported(spec: AttackSpec) -> str | None:
    if spec.binary_search_steps != 1:
        return (
            "torchattacks CW has no binary search over the constant (c stays at initial_const); "
            f"binary_search_steps must be 1, got {spec.binary_search_steps}"
        )
    return None


def _deepfool_unsupported(spec: AttackSpec) -> str | None:
    if spec.candidates is not None:
        return (
            "torchattacks DeepFool always uses all classes as candidates; "
            f"candidates must be unset, got {spec.candidates}"
        )
    return None


def _initial_step_unsupported(spec: AttackSpec) -> str | None:
    if not math.isclose(spec.step_size, 2 * spec.eps, rel_tol=1e-12, abs_tol=0.0):
        return (
            f"torchattacks APGD and APGDT hard-code the initial step as 2*eps ({2 * spec.eps:g}); "
            f"step_size must be 2*eps, got {spec.step_size:g}"
        )
    return None


def _target_classes(spec: AttackSpec, n_classes: int) -> int:
    """The `n_classes` to give APGDT or FAB so that they target the top `n_target_classes` other classes.

    Both take `n_classes` only to set `n_target_classes = n_classes - 1`, and target the classes ranked
    2 .. n_target_classes+1 by the clean logits, so n_target_classes + 1 is passed (the model's class count
    when n_target_classes is n_classes - 1, as with 9 of 10 classes).
    """
    if spec.n_target_classes > n_classes - 1:
        raise Unsupported(
            f"n_target_classes={spec.n_target_classes} needs at least {spec.n_target_classes + 1} classes; "
            f"the model has {n_classes}"
        )
    return spec.n_target_classes + 1


def _square_queries(spec: AttackSpec) -> int:
    """Square's `n_queries` that fits the query budget.

    Per sample, Square makes at most 1 + restarts * (n_queries + 2) forward passes: the accuracy check, then
    per restart the initial point, n_queries iterations and the check of the result. Past the bridge's budget
    the model stops answering, which would hide the final check and drop samples fooled late.
    """
    return (spec.max_queries - 1) // spec.restarts - 2


def _square_unsupported(spec: AttackSpec) -> str | None:
    if spec.max_queries is None or _square_queries(spec) < 1:
        return (
            "torchattacks Square needs max_queries >= 1 + 3 * restarts (per sample: an accuracy check, then per "
            f"restart the start, >= 1 iteration and a final check); got max_queries={spec.max_queries}, "
            f"restarts={spec.restarts}"
        )
    return None


def _ead_unsupported(spec: AttackSpec) -> str | None:
    if spec.confidence != 0:
        return (
            "torchattacks EAD tests success with output[:, labels] += kappa, which adds kappa to the column of every "
            "label in the batch, not each sample's own, so it keeps results below the confidence margin; "
            f"confidence must be 0, got {spec.confidence}"
        )
    return None


@functools.cache
def _ead_with_fixed_reference(cls: type) -> type:
    """torchattacks EADEN or EADL1 with the clean images kept apart from the iterate.

    Their `forward` builds the iterate as `y_k = nn.Parameter(images)`, which shares `images`' storage, so the
    in-place gradient step also moves the reference. Here `forward` keeps a copy and the distance terms and the
    FISTA shrinkage use it; everything else is torchattacks' code.
    """

    class WithFixedReference(cls):
        def forward(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
            self._reference = images.clone().detach().to(self.device)
            return super().forward(images, labels)

        def L1_loss(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
            return super().L1_loss(x1, self._reference)

        def L2_loss(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
            return super().L2_loss(x1, self._reference)

        def FISTA(self, images: torch.Tensor, x_k: torch.Tensor, y_k: torch.Tensor) -> Any:
            return super().FISTA(self._reference, x_k, y_k)

    WithFixedReference.__name__ = WithFixedReference.__qualname__ = f"{cls.__name__}WithFixedReference"
    return WithFixedReference


# Classes run with a defect repaired (native name -> class -> repaired subclass); see the module docstring.
REPAIRED = {"EADEN": _ead_with_fixed_reference, "EADL1": _ead_with_fixed_reference}


def _pgd_linf(spec: AttackSpec, n_classes: int) -> dict[str, Any]:
    return {"eps": spec.eps, "alpha": spec.step_size, "steps": spec.steps, "random_start": spec.random_start}


def _upgd(spec: AttackSpec, n_classes: int) -> dict[str, Any]:
    # decay=0.0: UPGD's default 1.0 adds MI-FGSM momentum; without it UPGD with loss 'ce' is PGD exactly.
    return {**_pgd_linf(spec, n_classes), "loss": spec.loss, "decay": 0.0, "eot_iter": 1}


def _apgd(spec: AttackSpec, n_classes: int) -> dict[str, Any]:
    return {
        "norm": NORMS[spec.norm],
        "eps": spec.eps,
        "steps": spec.steps,
        "n_restarts": spec.restarts,
        "seed": spec.seed,
        "loss": spec.loss,
        "eot_iter": 1,
        "rho": spec.rho,
        "verbose": False,
    }


def _apgdt(spec: AttackSpec, n_classes: int) -> dict[str, Any]:
    return {
        "norm": NORMS[spec.norm],
        "eps": spec.eps,
        "steps": spec.steps,
        "n_restarts": spec.restarts,
        "seed": spec.seed,
        "eot_iter": 1,
        "rho": spec.rho,
        "verbose": False,
        "n_classes": _target_classes(spec, n_classes),
    }


def _autoattack(spec: AttackSpec, n_classes: int) -> dict[str, Any]:
    """Standard AutoAttack as a MultiAttack of torchattacks' parts, with the original's constants.

    `attacks` holds the sub-attacks' descriptions ({class, kwargs}); `build` constructs them on the model.
    """
    norm, n_cls = NORMS[spec.norm], _target_classes(spec, n_classes)
    common = {"norm": norm, "eps": spec.eps, "n_restarts": 1, "seed": spec.seed, "verbose": False}
    apgd = {"steps": AA_STEPS, "eot_iter": 1, "rho": AA_RHO}
    return {
        "attacks": [
            {"class": "APGD", "kwargs": {**common, **apgd, "loss": "ce"}},
            {"class": "APGDT", "kwargs": {**common, **apgd, "n_classes": n_cls}},
            {
                "class": "FAB",
                "kwargs": {
                    **common,
                    "steps": AA_STEPS,
                    "alpha_max": 0.1,
                    "eta": 1.05,
                    "beta": 0.9,
                    "multi_targeted": True,
                    "n_classes": n_cls,
                },
            },
            {
                "class": "Square",
                "kwargs": {
                    **common,
                    "n_queries": AA_SQUARE_QUERIES,
                    "p_init": AA_SQUARE_P_INIT,
                    "loss": "margin",
                    "resc_schedule": False,
                },
            },
        ],
        "verbose": False,
    }


def _square(spec: AttackSpec, n_classes: int) -> dict[str, Any]:
    return {
        "norm": NORMS[spec.norm],
        "eps": spec.eps,
        "n_queries": _square_queries(spec),
        "n_restarts": spec.restarts,
        "p_init": spec.p_init,
        "loss": spec.loss,
        "resc_schedule": True,
        "seed": spec.seed,
        "verbose": False,
    }


def _ead(spec: AttackSpec, n_classes: int) -> dict[str, Any]:
    return {
        "kappa": spec.confidence,
        "lr": spec.step_size,
        "binary_search_steps": spec.binary_search_steps,
        "max_iterations": spec.steps,
        "abort_early": False,
        "initial_const": spec.initial_const,
        "beta": spec.beta,
    }


EAD_NOTE = (
    "torchattacks' EAD with its reference-image aliasing repaired (its iterate shared the clean image's storage). "
    "ISTA/FISTA on the margin loss with c*f + L2 + beta*L1, the learning rate decaying as lr*(1-t/T)^0.5; "
    "binary search over c (with >= 10 search steps the last uses the upper bound). abort_early=False: every "
    "iteration runs (ART's ElasticNet cannot abort early; torchattacks' check divides by steps // 10). Samples "
    "never fooled come back as the clean input."
)

PGD_ENTRY = Entry(
    native="PGD",
    kwargs=_pgd_linf,
    losses=("ce",),
    unsupported=_no_targeted_restarts,
    notes=RESTARTS_NOTE,
)
UPGD_ENTRY = Entry(
    native="UPGD",
    kwargs=_upgd,
    losses=("dlr", "margin"),
    unsupported=_no_targeted_restarts,
    notes=(
        "PGD on the DLR or margin loss (torchattacks UPGD with decay=0.0; its default 1.0 is MI-FGSM momentum).",
        (
            loss_is("margin"),
            "The margin is max(z_y - max(0, max_{j!=y} z_j), 0): torchattacks masks the true logit with 0, not "
            "-inf, so a runner-up logit below 0 counts as 0; it is 0 with zero gradient once a sample is fooled, "
            "which then stops moving.",
        ),
        (loss_is("dlr") & TARGETED, "The targeted DLR needs >= 4 classes."),
        RESTARTS_NOTE,
    ),
)
EADEN_ENTRY = Entry(
    native="EADEN",
    kwargs=_ead,
    losses=("margin",),
    unsupported=_ead_unsupported,
    notes="Decision rule EN: keeps the successful iterate with the smallest L2 + beta*L1. " + EAD_NOTE,
)
EADL1_ENTRY = dataclasses.replace(
    EADEN_ENTRY,
    native="EADL1",
    notes="Decision rule L1: keeps the successful iterate with the smallest L1. " + EAD_NOTE,
)

# Rows whose class depends on the spec: (attack, norm) -> spec -> Entry. The table holds the default.
VARIANTS = {
    ("pgd", "linf"): lambda spec: UPGD_ENTRY if spec.loss in UPGD_ENTRY.losses else PGD_ENTRY,
    ("ead", "l1"): lambda spec: EADL1_ENTRY if spec.decision_rule == "L1" else EADEN_ENTRY,
}


APGD_ENTRY = Entry(
    native="APGD",
    kwargs=_apgd,
    losses=("ce", "dlr"),
    targeted=False,
    unsupported=_initial_step_unsupported,
    notes=APGD_NOTE,
)
APGDT_ENTRY = Entry(
    native="APGDT",
    kwargs=_apgdt,
    losses=("dlr",),
    targeted=False,
    unsupported=_initial_step_unsupported,
    notes=(
        "Targeted DLR APGD run once per target class, the classes ranked 2 .. n_target_classes+1 by the clean "
        "logits, each on the samples still correctly classified; `n_classes` is n_target_classes + 1 because "
        "torchattacks targets n_classes - 1 classes.",
        APGD_NOTE,
    ),
)
AUTOATTACK_ENTRY = Entry(
    native="MultiAttack",
    kwargs=_autoattack,
    losses=("ensemble",),
    targeted=False,
    notes=(
        "Standard AutoAttack (fra31/auto-attack, version 'standard') built from torchattacks parts: APGD-CE, "
        "APGD-T, FAB-T and Square in a MultiAttack, each on the samples still correctly classified, with the "
        "original's constants: 100 iterations, 1 restart, n_target_classes target classes, Square with 5000 "
        "queries, p_init 0.8 and resc_schedule=False, the same seed for each. torchattacks.AutoAttack itself is "
        "not used: it runs its sub-attacks with 10 steps and n_classes=10. Samples no attack fools come back "
        "as the clean input, as in the original."
    ),
)
SQUARE_ENTRY = Entry(
    native="Square",
    kwargs=_square,
    losses=("margin", "ce"),
    unsupported=_square_unsupported,
    notes=(
        "n_queries = (max_queries - 1) // restarts - 2, so the accuracy check, the start and the final check "
        "of every restart fit the query budget.",
        OWN_RESTARTS,
        "resc_schedule=True: the p schedule (defined for 10000 queries) is rescaled to n_queries. Samples never "
        "fooled come back as the clean input.",
    ),
)


class TorchattacksAdapter(ToolkitAdapter):
    name = "torchattacks"
    wired = frozenset({"model"})
    frameworks = frozenset({"torch"})  # it calls the model on torch tensors and differentiates with autograd
    table = {
        ("fgsm", "linf"): Entry(
            native="FGSM",
            kwargs=lambda spec, n_classes: {"eps": spec.eps},
            losses=("ce",),
        ),
        # BIM's steps=0 would select the paper's step count; the spec never produces it (steps >= 1).
        ("bim", "linf"): Entry(
            native="BIM",
            kwargs=lambda spec, n_classes: {"eps": spec.eps, "alpha": spec.step_size, "steps": spec.steps},
            losses=("ce",),
        ),
        # Loss ce; dlr and margin run UPGD (VARIANTS).
        ("pgd", "linf"): PGD_ENTRY,
        ("pgd", "l2"): Entry(
            native="PGDL2",
            kwargs=lambda spec, n_classes: {
                "eps": spec.eps,
                "alpha": spec.step_size,
                "steps": spec.steps,
                "random_start": spec.random_start,
                "eps_for_division": 1e-10,
            },
            losses=("ce",),
            unsupported=_no_targeted_restarts,
            notes=(
                "The step direction is the batch-mean CE gradient divided by its norm + eps_for_division (1e-10), "
                "which shrinks steps for confident samples.",
                (
                    RANDOM_START,
                    "The random start is a Gaussian direction with a U(0,1)*eps radius, not uniform in the ball.",
                ),
                RESTARTS_NOTE,
            ),
        ),
        ("mifgsm", "linf"): Entry(
            native="MIFGSM",
            kwargs=lambda spec, n_classes: {
                "eps": spec.eps,
                "alpha": spec.step_size,
                "steps": spec.steps,
                "decay": spec.decay,
            },
            losses=("ce",),
        ),
        ("apgd", "linf"): APGD_ENTRY,
        ("apgd", "l2"): APGD_ENTRY,
        ("apgdt", "linf"): APGDT_ENTRY,
        ("apgdt", "l2"): APGDT_ENTRY,
        ("autoattack", "linf"): AUTOATTACK_ENTRY,
        ("autoattack", "l2"): AUTOATTACK_ENTRY,
        ("square", "linf"): SQUARE_ENTRY,
        ("square", "l2"): SQUARE_ENTRY,
        ("cw", "l2"): Entry(
            native="CW",
            kwargs=lambda spec, n_classes: {
                "c": spec.initial_const,
                "kappa": spec.confidence,
                "steps": spec.steps,
                "lr": spec.step_size,
            },
            losses=("margin",),
            unsupported=_cw_unsupported,
            notes=(
                "No binary search: c stays at initial_const, and samples it does not fool come back as the clean "
                "input. It stops early when the batch's summed cost rose (checked every steps/10 steps). kappa "
                "shapes the loss only: a result is kept once misclassified, whatever its margin; the loss takes the "
                "runner-up logit as max(0, max_{j!=y} z_j) (the true logit is masked with 0, not -inf)."
            ),
        ),
        # Decision rule EN; L1 runs EADL1 (VARIANTS).
        ("ead", "l1"): EADEN_ENTRY,
        ("deepfool", "l2"): Entry(
            native="DeepFool",
            kwargs=lambda spec, n_classes: {"steps": spec.steps, "overshoot": spec.overshoot},
            losses=("logits",),
            targeted=False,
            unsupported=_deepfool_unsupported,
            notes=(
                "The overshoot scales each step, not the total perturbation, so results end on the decision "
                "boundary and some are not misclassified; all classes are candidates; it loops per sample."
            ),
        ),
        ("jsma", "l0"): Entry(
            native="JSMA",
            kwargs=lambda spec, n_classes: {"theta": spec.theta, "gamma": spec.gamma},
            losses=("logits",),
            notes=(
                "Per sample: each iteration changes the two features of highest saliency (from the logits' "
                "Jacobian) by theta, clipped to [0,1], for at most ceil(gamma * n_features / 2) iterations or until "
                "the target is predicted; features within 0.01 of the bound theta moves towards are not searched. "
                "Always run targeted with the bridge's targets (torchattacks' untargeted mode targets "
                "(label+1) % 10). The saliency map has n_features^2 entries per sample, so memory grows with the "
                "square of the input size."
            ),
        ),
    }

    def entry(self, spec: AttackSpec) -> Entry | None:
        """The row the spec selects where the class depends on more than (attack, norm) (`VARIANTS`)."""
        choose = VARIANTS.get((spec.attack, spec.norm))
        return choose(spec) if choose else super().entry(spec)

    def check(self, translation: Translation) -> None:
        """The base checks, and for a MultiAttack the same checks on every sub-attack."""
        super().check(translation)
        if translation.native == "MultiAttack":
            for name, kwargs in _sub_attacks(translation.kwargs):
                super().check(dataclasses.replace(translation, native=name, kwargs=kwargs, call_kwargs={}))

    def native_class(self, native: str) -> type:
        import torchattacks
        from torchattacks.attack import Attack

        cls = getattr(torchattacks, native)
        if not (isinstance(cls, type) and issubclass(cls, Attack)):
            raise AttributeError(f"torchattacks.{native} is not an attack class")
        return cls

    def instantiate(self, translation: Translation, spec: AttackSpec, model: SharedModel) -> Any:
        """The torchattacks object for a cell: restart copies in a MultiAttack, targeted mode set."""
        import torchattacks

        n = (spec.restarts or 1) if translation.native in COPY_RESTARTS else 1
        copies = [self._construct(translation.native, translation.kwargs, model) for _ in range(n)]
        if spec.targeted != "none":
            for atk in copies:
                if "targeted" not in atk.supported_mode:
                    raise Unsupported(f"torchattacks {translation.native} has no targeted mode")
                atk.set_mode_targeted_by_label(quiet=True)
        return copies[0] if n == 1 else torchattacks.MultiAttack(copies, verbose=False)

    def _construct(self, native: str, kwargs: dict[str, Any], model: SharedModel) -> Any:
        if native == "MultiAttack":
            attacks = [self._construct(name, sub, model) for name, sub in _sub_attacks(kwargs)]
            rest = {k: v for k, v in kwargs.items() if k != "attacks"}
            return self.native_class(native)(attacks, **rest)
        cls = self.native_class(native)
        return REPAIRED[native](cls)(model, **kwargs) if native in REPAIRED else cls(model, **kwargs)

    def build(self, translation: Translation, spec: AttackSpec, model: SharedModel) -> AttackFn:
        if model.framework not in self.frameworks:
            raise Unsupported(
                f"torchattacks attacks PyTorch modules only (it calls the model on torch tensors and differentiates "
                f"with torch.autograd); model {model.name} is a {model.framework} model"
            )
        if model.bounds != UNIT_BOUNDS:
            raise Unsupported(
                f"torchattacks clamps inputs to [0, 1] (hard-coded); the model's bounds are {model.bounds}"
            )
        margin = translation.native == "UPGD" and translation.kwargs.get("loss") == "margin"
        if margin and spec.targeted == "none" and model.device.type != "cpu":
            raise Unsupported(
                "torchattacks UPGD's untargeted margin loss indexes a CPU identity matrix with the labels "
                f"(torch.eye(n)[labels]), which fails on {model.device}; use loss dlr, or run on the CPU"
            )
        native = self.instantiate(translation, spec, model)

        def attack(x: torch.Tensor, y: torch.Tensor, targets: torch.Tensor | None) -> torch.Tensor:
            labels = self.goal(spec, y, targets)
            return self.output(native(x, labels, **translation.call_kwargs), model)

        return attack


def _sub_attacks(kwargs: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """A MultiAttack's `attacks`: a list of {"class": name, "kwargs": {...}}, as (name, kwargs) pairs."""
    attacks = kwargs.get("attacks")
    if not isinstance(attacks, list) or len(attacks) < 2:
        raise ValueError('torchattacks MultiAttack needs `attacks`: a list of >= 2 {"class": ..., "kwargs": {...}}')
    pairs = []
    for item in attacks:
        if not (isinstance(item, dict) and set(item) == {"class", "kwargs"} and isinstance(item["kwargs"], dict)):
            raise ValueError(
                f'torchattacks MultiAttack: each attack is {{"class": ..., "kwargs": {{...}}}}, got {item!r}'
            )
        pairs.append((item["class"], item["kwargs"]))
    return pairs


ADAPTER = TorchattacksAdapter()
