"""One attack spec: the toolkit-independent description of one cell, resolved to explicit values.

`resolve_attack` turns what a scenario wrote into a complete spec: it checks the combination against the
catalogue, fills the bridge's defaults, and derives eps-dependent step sizes, so that adapters receive
only explicit values and never fall back on a toolkit default.
"""

from __future__ import annotations

import re
from fractions import Fraction
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, ConfigDict

from bridge.attacks.catalogue import ATTACK_NAMES, CATALOGUE, NATIVE, TUNING_FIELDS
from bridge.core.schema import Strict

TOOLKITS = ("art", "foolbox", "torchattacks")
LOSSES = ("ce", "dlr", "margin", "logits", "probability", "decision", "ensemble")


class SpecError(ValueError):
    """A spec that cannot be run as written; `field` names the offending key."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field
        self.message = message


def _number(value: Any) -> Any:
    """Numbers, or fractions written as text such as '8/255' (the usual way to state image budgets)."""
    if isinstance(value, str) and re.fullmatch(r"\s*\d+(\.\d*)?\s*/\s*\d+(\.\d*)?\s*", value):
        num, den = (Fraction(p.strip()) for p in value.split("/"))
        if den == 0:
            raise ValueError(f"'{value.strip()}' divides by zero; write a budget such as 8/255")
        return float(num / den)
    return value


Budget = Annotated[float, BeforeValidator(_number)]


class Tuning(Strict):
    """The fields that tune an attack, shared by a scenario's attack entry and a resolved cell."""

    steps: int | None = None
    step_size: Budget | None = None
    random_start: bool | None = None
    restarts: int | None = None
    targeted: Literal["none", "random", "least_likely"] = "none"
    loss: str | None = None
    decay: float | None = None
    confidence: float | None = None
    initial_const: float | None = None
    binary_search_steps: int | None = None
    overshoot: float | None = None
    candidates: int | None = None
    rho: float | None = None
    n_target_classes: int | None = None
    version: Literal["standard"] | None = None
    p_init: float | None = None
    beta: float | None = None
    decision_rule: Literal["EN", "L1"] | None = None
    theta: float | None = None
    gamma: float | None = None
    spherical_step: float | None = None
    source_step: float | None = None
    step_adaptation: float | None = None
    init_evals: int | None = None
    max_evals: int | None = None
    max_queries: int | None = None  # forward passes per sample; enforced by the bridge for every toolkit
    native: str | None = None  # the toolkit's class name, for `attack: native`
    options: dict[str, Any] = {}


class AttackSpec(Tuning):
    """A fully resolved cell: every field the attack uses has a value."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    attack: str
    toolkit: str
    norm: Literal["linf", "l2", "l1", "l0"]
    eps: float | None = None
    seed: int = 0
    batch_size: int | Literal["auto"] = 128  # auto: resolved where the cell runs (bridge/engine/batch.py)

    @property
    def kind(self) -> str:
        """fixed (eps is the budget) or minimum (eps, if any, is a threshold); native cells: by their eps."""
        if self.attack == NATIVE:
            return "minimum" if self.eps is None else "fixed"
        return CATALOGUE[self.attack].kind

    @property
    def access(self) -> str:
        return "gradient" if self.attack == NATIVE else CATALOGUE[self.attack].access

    @property
    def label(self) -> str:
        """Readable cell name, e.g. `pgd-linf eps=0.1 | foolbox`."""
        eps = "" if self.eps is None else f" eps={self.eps:g}"
        name = f"{self.native}" if self.attack == NATIVE else self.attack
        tgt = "" if self.targeted == "none" else f" targeted={self.targeted}"
        return f"{name}-{self.norm}{eps}{tgt} | {self.toolkit}"

    def params(self) -> dict[str, Any]:
        """The spec as MLflow params: unset fields are left out, options kept as text."""
        out = {k: v for k, v in self.model_dump().items() if v is not None and k != "options"}
        if self.options:
            out["options"] = repr(dict(sorted(self.options.items())))
        return out


def resolve_attack(raw: dict[str, Any]) -> AttackSpec:
    """Check one cell against the catalogue and fill the bridge's explicit defaults."""
    attack = raw["attack"]
    if attack not in ATTACK_NAMES:
        raise SpecError("attack", f"unknown attack '{attack}'; allowed: {', '.join(ATTACK_NAMES)}")
    if raw["toolkit"] not in TOOLKITS:
        raise SpecError("toolkit", f"unknown toolkit '{raw['toolkit']}'; allowed: {', '.join(TOOLKITS)}")
    if attack == NATIVE:
        return _resolve_native(raw)
    if raw.get("native") is not None:
        raise SpecError("native", f"'native' names a toolkit class for `attack: native`, not for {attack}")
    info = CATALOGUE[attack]
    if raw["norm"] not in info.norms:
        raise SpecError("norm", f"{attack} is defined for norms {', '.join(info.norms)}, not '{raw['norm']}'")
    fields = dict(raw)
    _check_ranges(fields)  # what was written, before the derived defaults divide by it (step_size = eps / steps)
    eps = fields.get("eps")
    if info.kind == "fixed" and eps is None:
        raise SpecError("eps", f"{attack} is a fixed-budget attack: eps is required (absolute, in input units)")
    if eps is not None and (eps < 0 or (info.kind == "fixed" and eps == 0)):
        raise SpecError("eps", f"eps must be > 0 for {attack}, got {eps}")
    if info.targeted_only and fields.get("targeted", "none") == "none":
        raise SpecError("targeted", f"{attack} is a targeted attack: set targeted to random or least_likely")
    for name in TUNING_FIELDS:
        if name not in info.params and fields.get(name) is not None:
            takes = ", ".join(info.params) or "no tuning fields"
            raise SpecError(name, f"'{name}' does not apply to {attack} (it takes: {takes})")
    for name, value in info.defaults.items():
        if fields.get(name) is None:
            fields[name] = value
    for name, rule in info.derived.items():
        if fields.get(name) is None:
            fields[name] = rule(fields)
    _check_ranges(fields)
    if "random_start" in info.params and (fields.get("restarts") or 1) > 1 and not fields.get("random_start"):
        raise SpecError("restarts", "restarts > 1 needs random_start: true (restarts from the same point repeat)")
    loss = fields.get("loss")
    if loss is None:
        fields["loss"] = info.loss
    elif loss not in LOSSES:
        raise SpecError("loss", f"unknown loss '{loss}'; allowed: {', '.join(LOSSES)}")
    return AttackSpec(**fields)


def _check_ranges(fields: dict[str, Any]) -> None:
    for name in ("steps", "restarts", "binary_search_steps", "candidates", "n_target_classes", "max_queries"):
        if fields.get(name) is not None and fields[name] < 1:
            raise SpecError(name, f"{name} must be >= 1, got {fields[name]}")
    if fields.get("step_size") is not None and fields["step_size"] <= 0:
        raise SpecError("step_size", f"step_size must be > 0 (absolute, in input units), got {fields['step_size']}")


def _resolve_native(raw: dict[str, Any]) -> AttackSpec:
    """`attack: native`: a toolkit class by name; only options, targeting, eps and a query budget apply."""
    if not raw.get("native"):
        raise SpecError("native", "attack: native needs `native:` naming the toolkit's class, e.g. native: FAB")
    for name in TUNING_FIELDS:
        if raw.get(name) is not None:
            raise SpecError(name, f"'{name}' does not apply to attack: native (pass the class's own names in options)")
    if raw.get("loss") is not None:
        raise SpecError("loss", "loss does not apply to attack: native (pass the class's own names in options)")
    _check_ranges(raw)
    return AttackSpec(**{**raw, "loss": "native"})
