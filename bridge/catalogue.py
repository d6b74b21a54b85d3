"""The canonical attacks: their norms, kind, the spec fields each uses, and the bridge's own defaults.

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


def _step_2_5(fields: dict[str, Any]) -> float:
    """Madry et al.'s rule: step = 2.5 * eps / steps, so the walk can cross the ball."""
    return 2.5 * fields["eps"] / fields["steps"]


def _step_eps_over_steps(fields: dict[str, Any]) -> float:
    """Kurakin/Dong et al.'s rule for BIM and MI-FGSM: step = eps / steps."""
    return fields["eps"] / fields["steps"]


CATALOGUE: dict[str, AttackInfo] = {
    a.name: a
    for a in (
        AttackInfo("fgsm", "Fast gradient (sign) method, one step of size eps", ("linf", "l2"), "fixed", (), "ce"),
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
            "cw",
            "Carlini-Wagner L2 (minimum-norm, margin loss)",
            ("l2",),
            "minimum",
            ("steps", "step_size", "confidence", "initial_const", "binary_search_steps"),
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
            "deepfool",
            "DeepFool (minimum-norm, linearised boundary)",
            ("l2", "linf"),
            "minimum",
            ("steps", "overshoot", "candidates"),
            "logits",
            defaults={"steps": 50, "overshoot": 0.02, "candidates": None},
        ),
    )
}


def info(attack: str) -> AttackInfo:
    return CATALOGUE[attack]
