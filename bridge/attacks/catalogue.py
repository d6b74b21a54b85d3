"""The canonical attacks: their norms, kind, access, the spec fields each uses, and the bridge's defaults.

Defaults live here, once, so that every toolkit receives the same explicit values; none falls back on a
toolkit's own default. A default that depends on eps (step sizes) is computed per cell and logged.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

NORMS = ("linf", "l2", "l1", "l0")
TARGETED = ("none", "random", "least_likely")

# Spec fields that tune a particular attack; an attack may only set the ones it lists in `params`.
# `max_queries` is not among them: any attack may be given a query budget, which the bridge enforces.
TUNING_FIELDS = (
    "steps",
    "step_size",
    "random_start",
    "restarts",
    "decay",
    "confidence",
    "initial_const",
    "binary_search_steps",
    "overshoot",
    "candidates",
    "rho",
    "n_target_classes",
    "version",
    "p_init",
    "beta",
    "decision_rule",
    "theta",
    "gamma",
    "spherical_step",
    "source_step",
    "step_adaptation",
    "init_evals",
    "max_evals",
)


@dataclass(frozen=True)
class AttackInfo:
    """What the bridge knows about a canonical attack, independent of any toolkit."""

    name: str
    title: str
    norms: tuple[str, ...]
    kind: Literal["fixed", "minimum"]  # fixed-budget (needs eps) or minimum-norm (eps is a threshold)
    params: tuple[str, ...]  # tuning fields this attack takes
    loss: str  # the loss the canonical attack optimises
    defaults: dict[str, Any] = field(default_factory=dict)
    derived: dict[str, Callable[[dict[str, Any]], Any]] = field(default_factory=dict)
    access: Literal["gradient", "score", "decision", "mixed"] = "gradient"  # what the attack reads of the model
    targeted_only: bool = False  # the attack has no untargeted form (JSMA)


def _step_2_5(fields: dict[str, Any]) -> float:
    """Madry et al.'s rule: step = 2.5 * eps / steps, so the walk can cross the ball."""
    return 2.5 * fields["eps"] / fields["steps"]


def _step_eps_over_steps(fields: dict[str, Any]) -> float:
    """Kurakin/Dong et al.'s rule for BIM and MI-FGSM: step = eps / steps."""
    return fields["eps"] / fields["steps"]


def _step_2_eps(fields: dict[str, Any]) -> float:
    """Croce & Hein's APGD: the initial step is 2 * eps (it then adapts)."""
    return 2 * fields["eps"]


_CW = ("steps", "step_size", "confidence", "initial_const", "binary_search_steps")

CATALOGUE: dict[str, AttackInfo] = {
    a.name: a
    for a in (
        AttackInfo(
            "fgsm", "Fast gradient (sign) method: one step of size eps", ("linf", "l2", "l1"), "fixed", (), "ce"
        ),
        AttackInfo(
            "bim",
            "Basic iterative method (I-FGSM), no random start",
            ("linf", "l2", "l1"),
            "fixed",
            ("steps", "step_size"),
            "ce",
            defaults={"steps": 10},
            derived={"step_size": _step_eps_over_steps},
        ),
        AttackInfo(
            "pgd",
            "Projected gradient descent (Madry et al.)",
            ("linf", "l2", "l1"),
            "fixed",
            ("steps", "step_size", "random_start", "restarts"),
            "ce",
            defaults={"steps": 10, "random_start": True, "restarts": 1},
            derived={"step_size": _step_2_5},
        ),
        AttackInfo(
            "mifgsm",
            "Momentum iterative FGSM (Dong et al.)",
            ("linf",),
            "fixed",
            ("steps", "step_size", "decay"),
            "ce",
            defaults={"steps": 10, "decay": 1.0},
            derived={"step_size": _step_eps_over_steps},
        ),
        AttackInfo(
            "apgd",
            "Auto-PGD (Croce & Hein): step-size schedule, momentum, random start",
            ("linf", "l2", "l1"),
            "fixed",
            ("steps", "step_size", "restarts", "rho"),
            "ce",
            defaults={"steps": 100, "restarts": 1, "rho": 0.75},
            derived={"step_size": _step_2_eps},
        ),
        AttackInfo(
            "apgdt",
            "Targeted Auto-PGD on the DLR loss over the top n_target_classes classes (per-sample worst case)",
            ("linf", "l2"),
            "fixed",
            ("steps", "step_size", "restarts", "rho", "n_target_classes"),
            "dlr",
            defaults={"steps": 100, "restarts": 1, "rho": 0.75, "n_target_classes": 9},
            derived={"step_size": _step_2_eps},
        ),
        AttackInfo(
            "autoattack",
            "AutoAttack standard: APGD-CE, APGD-T, FAB-T, Square in sequence, per-sample worst case",
            ("linf", "l2"),
            "fixed",
            ("version", "n_target_classes"),
            "ensemble",
            defaults={"version": "standard", "n_target_classes": 9},
            access="mixed",
        ),
        AttackInfo(
            "square",
            "Square Attack (score-based, random search)",
            ("linf", "l2"),
            "fixed",
            ("restarts", "p_init"),
            "margin",
            defaults={"restarts": 1, "p_init": 0.8, "max_queries": 1000},
            access="score",
        ),
        AttackInfo(
            "cw",
            "Carlini-Wagner (minimum-norm, margin loss)",
            ("l2", "linf"),
            "minimum",
            _CW,
            "margin",
            defaults={
                "steps": 100,
                "step_size": 0.01,
                "confidence": 0.0,
                "initial_const": 1.0,
                "binary_search_steps": 1,
            },
        ),
        AttackInfo(
            "ead",
            "Elastic-net attack (EAD, Chen et al.): C&W with an L1 term",
            ("l1",),
            "minimum",
            (*_CW, "beta", "decision_rule"),
            "margin",
            defaults={
                "steps": 100,
                "step_size": 0.01,
                "confidence": 0.0,
                "initial_const": 1e-2,
                "binary_search_steps": 5,
                "beta": 1e-3,
                "decision_rule": "EN",
            },
        ),
        AttackInfo(
            "deepfool",
            "DeepFool (minimum-norm, linearised boundary)",
            ("l2", "linf"),
            "minimum",
            ("steps", "overshoot", "candidates"),
            "logits",
            defaults={"steps": 50, "overshoot": 0.02, "candidates": None},
        ),
        AttackInfo(
            "jsma",
            "Jacobian saliency map attack (L0, targeted)",
            ("l0",),
            "minimum",
            ("theta", "gamma"),
            "logits",
            defaults={"theta": 1.0, "gamma": 0.1},
            targeted_only=True,
        ),
        AttackInfo(
            "newtonfool",
            "NewtonFool (Jang et al.): Newton steps that lower the true class's probability",
            ("l2",),
            "minimum",
            ("steps", "step_size"),
            "probability",
            defaults={"steps": 50, "step_size": 0.01},
        ),
        AttackInfo(
            "boundary",
            "Boundary attack (Brendel et al.): decision-based random walk along the boundary",
            ("l2",),
            "minimum",
            ("steps", "spherical_step", "source_step", "step_adaptation"),
            "decision",
            defaults={"steps": 200, "spherical_step": 0.01, "source_step": 0.01, "step_adaptation": 1.5},
            access="decision",
        ),
        AttackInfo(
            "hopskipjump",
            "HopSkipJump (Chen et al.): decision-based, gradient estimates at the boundary",
            ("l2", "linf"),
            "minimum",
            ("steps", "init_evals", "max_evals"),
            "decision",
            defaults={"steps": 20, "init_evals": 100, "max_evals": 1000},
            access="decision",
        ),
    )
}

# `attack: native` passes a toolkit's class through by name (`native:`), with `options:` checked against its
# signature. The bridge cannot speak for its defaults: such cells are tagged `defaults: toolkit`.
NATIVE = "native"
ATTACK_NAMES = (*CATALOGUE, NATIVE)
ITERATIVE = ("bim", "pgd", "mifgsm", "apgd", "apgdt")  # gradient attacks with steps, compared with fgsm


def info(attack: str) -> AttackInfo:
    return CATALOGUE[attack]
