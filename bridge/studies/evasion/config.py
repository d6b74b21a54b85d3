"""The evasion study's sections of a scenario: `attacks` (the grid), `checks`, `transfer`, `transfer_from`, `export`,
`robustness`, `detector`."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field

from bridge.attacks.catalogue import ATTACK_NAMES
from bridge.attacks.spec import TOOLKITS, Budget, Tuning
from bridge.core.schema import Strict
from bridge.defences.detector import DetectorConfig
from bridge.defences.grid import NONE, TrainingDefence
from bridge.studies.evasion.model_metrics import ModelMetricsConfig


def _as_list(value: Any) -> Any:
    return value if isinstance(value, list) else [value]


def transfer_kinds(value: Any) -> Any:
    """`transfer:` one name or a list of names; true is `defences`, false (or null) none."""
    if isinstance(value, bool) or value is None:
        return ["defences"] if value else []
    return _as_list(value)


TRANSFERS = ("defences", "models")


class AttackEntry(Tuning):
    """One line of the attack grid; `toolkit` and `eps` may be lists, expanded into cells."""

    attack: Literal[ATTACK_NAMES]  # type: ignore[valid-type]
    toolkit: Annotated[list[Literal[TOOLKITS]], BeforeValidator(_as_list)] = list(TOOLKITS)  # type: ignore[valid-type]
    norm: Literal["linf", "l2", "l1", "l0"]
    eps: Annotated[list[Budget | None], BeforeValidator(_as_list)] = [None]
    seed: int | None = None


class ChecksConfig(Strict):
    """Cells some sanity checks need, added to the grid on request."""

    large_eps: bool = False  # pgd-linf at eps = the whole input range, in every toolkit of the scenario
    double_steps: bool = False  # each iterative attack again at twice its steps, at its largest eps


class DetectorEntry(DetectorConfig):
    """`detector:` a binary detector trained on one toolkit's examples of one attack cell of the grid (the cells
    with this attack, norm and eps), evaluated on every toolkit's examples of those cells."""

    attack: Literal[ATTACK_NAMES]  # type: ignore[valid-type]
    norm: Literal["linf", "l2", "l1", "l0"]
    eps: Budget


# The scenario keys of the evasion study: name -> (annotation, default).
FIELDS: dict[str, tuple[Any, Any]] = {
    "attacks": (list[AttackEntry] | None, Field(default=None, min_length=1)),
    "checks": (ChecksConfig, ChecksConfig()),
    # defences: also evaluate each preprocessing-defended model on the examples made on its undefended model;
    # models: every cell's examples on every other model of the study (a source x target matrix)
    "transfer": (Annotated[list[Literal[TRANSFERS]], BeforeValidator(transfer_kinds)], []),  # type: ignore[valid-type]
    # every cell again, crafted on a model the extraction study stole from the victim (`<attack>` at its largest
    # budget, or `<attack>@<budget>`) and judged by the victim: the black-box transfer attack (Papernot et al. 2016)
    "transfer_from": (Annotated[list[str], BeforeValidator(_as_list)], []),
    # npz: every attack cell's examples with their labels and predictions, as `examples.npz` on its child run
    "export": (Literal["none", "npz"], "none"),
    "robustness": (ModelMetricsConfig | None, None),  # CLEVER, empirical robustness, loss sensitivity per model
    "detector": (DetectorEntry | None, None),
}


def thief_of(entry: str, extraction: Any) -> tuple[str, int]:
    """The (extraction attack, budget) of a `transfer_from` entry: `<attack>` (its largest budget) or
    `<attack>@<budget>` (ValueError: one line)."""
    if extraction is None:
        raise ValueError(f"transfer_from: {entry} is a model stolen by the extraction study: add an extraction section")
    label, at, budget = entry.partition("@")
    labels = [a.label for a in extraction.attacks]
    if label not in labels:
        raise ValueError(f"transfer_from: {entry}: no extraction attack {label} (attacks: {', '.join(labels)})")
    if not at:
        return label, max(extraction.budgets)
    if not budget.isdigit() or int(budget) not in extraction.budgets:
        allowed = ", ".join(str(b) for b in extraction.budgets)
        raise ValueError(f"transfer_from: {entry}: the budget after @ is one of extraction.budgets ({allowed})")
    return label, int(budget)


def validate(scenario: Any) -> None:
    """Checks across keys (ValueError: one line)."""
    for entry in scenario.transfer_from:
        thief_of(entry, scenario.extraction)
    if len(set(scenario.transfer_from)) < len(scenario.transfer_from):
        raise ValueError("transfer_from: each stolen model once")
    defences = scenario.defences
    if "models" in scenario.transfer and len(scenario.model_list) * len(defences) < 2:
        raise ValueError("transfer: models evaluates each cell's examples on the study's other models: "
                         "models (or defences) needs at least two entries")  # fmt: skip
    preprocessing = any(d != NONE and not isinstance(d, TrainingDefence) for d in defences)
    if "defences" in scenario.transfer and not (NONE in defences and preprocessing):
        raise ValueError("transfer: defences evaluates preprocessing defences on examples made on the undefended "
                         "model: defences needs none and at least one preprocessing defence")  # fmt: skip
    detector = scenario.detector
    toolkits = {t for entry in scenario.attacks for t in entry.toolkit if detector and entry.attack == detector.attack}
    if detector is not None and detector.train_toolkit not in toolkits:
        raise ValueError(f"detector: no {detector.train_toolkit} cell of {detector.attack} in attacks")
