"""The one attack interface: what an adapter is, and the shared logic every adapter uses.

An adapter is a table: (canonical attack, norm) -> `Entry`, naming the toolkit's class and spelling out
every constructor argument from the spec. The base class does the lookup, the support checks, the option
merge and the signature check (every parameter of the native class must be passed explicitly); the
toolkit module only knows how to import its classes and how to run one on a batch.

An entry's notes are clauses, some of which hold only for some cells (`When`): a cell's translation carries
exactly the clauses that hold for its spec, and the docs list every clause with its condition.
"""

from __future__ import annotations

import importlib
import inspect
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from bridge.attacks.catalogue import NATIVE
from bridge.attacks.spec import AttackSpec

if TYPE_CHECKING:  # the models are handed in; attacks/ does not depend on how they are built
    from bridge.models.keras import KerasModel
    from bridge.models.shared import SharedModel

# Toolkit name -> module in adapters/ holding `ADAPTER`; imported only when a toolkit is used.
ADAPTER_MODULES = {
    "art": "adapters.art_adapter",
    "foolbox": "adapters.foolbox_adapter",
    "torchattacks": "adapters.torchattacks_adapter",
}

AttackFn = Callable[[torch.Tensor, torch.Tensor, "torch.Tensor | None"], torch.Tensor]


class Unsupported(Exception):
    """The toolkit lacks this combination; the message is the reason shown to the user."""


@dataclass(frozen=True)
class When:
    """A named condition on a cell's spec: a note clause paired with it holds only for the cells that meet it."""

    label: str  # how the docs show it: "(when <label>)"
    holds: Callable[[AttackSpec], bool]

    def __call__(self, spec: AttackSpec) -> bool:
        return bool(self.holds(spec))

    def __and__(self, other: When) -> When:
        return When(f"{self.label} and {other.label}", lambda spec: self(spec) and other(spec))


TARGETED = When("targeted", lambda spec: spec.targeted != "none")
UNTARGETED = When("untargeted", lambda spec: spec.targeted == "none")
RANDOM_START = When("random_start", lambda spec: bool(spec.random_start))
RESTARTS = When("restarts > 1", lambda spec: (spec.restarts or 1) > 1)
QUERY_BUDGET = When("max_queries is set", lambda spec: spec.max_queries is not None)


def loss_is(loss: str) -> When:
    return When(f"loss is {loss}", lambda spec: spec.loss == loss)


# An entry's notes: a sentence, or a tuple of parts, each a sentence (every cell), a (When, notes) pair (the
# cells that meet the condition) or a tuple of parts (a group of clauses shared by several entries).
Notes = str | tuple[Any, ...]


def note_clauses(notes: Notes, when: When | None = None) -> list[tuple[When | None, str]]:
    """Every clause of `notes` in order, with its condition (None: every cell)."""
    if isinstance(notes, str):
        return [(when, notes)] if notes else []
    if len(notes) == 2 and isinstance(notes[0], When):
        return note_clauses(notes[1], notes[0] if when is None else when & notes[0])
    return [clause for part in notes for clause in note_clauses(part, when)]


@dataclass(frozen=True)
class Entry:
    """One row of an adapter's table."""

    native: str  # the toolkit's class name
    kwargs: Callable[[AttackSpec, int], dict[str, Any]]  # (spec, n_classes) -> every constructor argument
    losses: tuple[str, ...]  # losses this class optimises; the spec's loss must be one of them
    targeted: bool = True  # whether the class has a targeted mode
    call: Callable[[AttackSpec], dict[str, Any]] = field(default=lambda spec: {})  # call-time arguments
    unsupported: Callable[[AttackSpec], str | None] = field(default=lambda spec: None)  # per-spec refusals
    notes: Notes = ""  # differences in meaning from the other toolkits, shown in results and docs

    def notes_for(self, spec: AttackSpec) -> str:
        """The notes of one cell: the clauses that hold for `spec`."""
        return " ".join(text for when, text in note_clauses(self.notes) if when is None or when(spec))


@dataclass(frozen=True)
class Translation:
    """A spec translated into one toolkit's terms: what the cell will construct and call, verbatim."""

    toolkit: str
    native: str
    kwargs: dict[str, Any]
    call_kwargs: dict[str, Any]
    notes: str
    passthrough: bool = False  # `attack: native`: parameters left out of options take the toolkit's defaults

    def as_dict(self) -> dict[str, Any]:
        return {
            "toolkit": self.toolkit,
            "native_class": self.native,
            "constructor": {k: _jsonable(v) for k, v in self.kwargs.items()},
            "call": {k: _jsonable(v) for k, v in self.call_kwargs.items()},
            "notes": self.notes,
            "defaults": "toolkit" if self.passthrough else "none (every parameter explicit)",
        }


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and np.isinf(value):
        return "inf" if value > 0 else "-inf"
    if isinstance(value, np.generic):
        return _jsonable(value.item())
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value if isinstance(value, (int, float, str, bool, type(None))) else repr(value)


class ToolkitAdapter(ABC):
    """Base of the three adapters: table lookup, support checks, explicit-argument checks, output type."""

    name: str
    table: dict[tuple[str, str], Entry]
    # Constructor parameters the adapter fills at build time (the model or estimator), not from the spec.
    wired: frozenset[str] = frozenset()
    # Model frameworks the toolkit can attack (SharedModel: torch; KerasModel: keras).
    frameworks: frozenset[str] = frozenset({"torch", "keras"})

    def translate(self, spec: AttackSpec, n_classes: int) -> Translation:
        """The native class and arguments for `spec`, or `Unsupported` with the reason."""
        if spec.attack == NATIVE:
            return self._native(spec)
        entry = self.entry(spec)
        if entry is None:
            norms = sorted(n for a, n in self.table if a == spec.attack)
            has = f" (it has {spec.attack} for {', '.join(norms)})" if norms else ""
            raise Unsupported(f"{self.name} has no {spec.attack} for norm {spec.norm}{has}")
        if spec.loss not in entry.losses:
            raise Unsupported(f"{self.name} {entry.native} optimises {', '.join(entry.losses)}, not loss '{spec.loss}'")
        if spec.targeted != "none" and not entry.targeted:
            raise Unsupported(f"{self.name} {entry.native} has no targeted mode")
        reason = entry.unsupported(spec)
        if reason:
            raise Unsupported(reason)
        kwargs = {**entry.kwargs(spec, n_classes), **spec.options}
        return Translation(self.name, entry.native, kwargs, entry.call(spec), entry.notes_for(spec))

    def _native(self, spec: AttackSpec) -> Translation:
        """A class by name with the options verbatim; its `targeted` follows the spec unless the options say
        otherwise, since some classes default to targeted=True (ART's BoundaryAttack, SignOPTAttack)."""
        kwargs = dict(spec.options)
        try:
            if "targeted" in self.signature(spec.native) and "targeted" not in kwargs:
                kwargs["targeted"] = spec.targeted != "none"
        except AttributeError:
            pass  # an unknown class: check() reports it
        note = "Native passthrough: parameters not given in options take the toolkit's defaults."
        return Translation(self.name, spec.native, kwargs, self.native_call(spec), note, True)

    def entry(self, spec: AttackSpec) -> Entry | None:
        """The table row for `spec`; an adapter whose class depends on more than (attack, norm) overrides it."""
        return self.table.get((spec.attack, spec.norm))

    def check(self, translation: Translation) -> None:
        """Options must name real parameters, and every parameter must be passed (no toolkit defaults)."""
        try:
            params = self.signature(translation.native)
        except AttributeError:
            raise ValueError(f"{self.name} has no attack class '{translation.native}'") from None
        unknown = sorted(set(translation.kwargs) - set(params))
        if unknown:
            raise ValueError(
                f"{self.name} {translation.native} has no parameter {', '.join(unknown)}; "
                f"it takes: {', '.join(sorted(params - self.wired))}"
            )
        missing = sorted(params - self.wired - set(translation.kwargs))
        if missing and not translation.passthrough:
            raise AssertionError(f"adapter {self.name} leaves {translation.native}({', '.join(missing)}) to defaults")

    def signature(self, native: str) -> set[str]:
        sig = inspect.signature(self.native_class(native))
        kinds = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
        return {n for n, p in sig.parameters.items() if p.kind not in kinds}

    def native_call(self, spec: AttackSpec) -> dict[str, Any]:
        """Call-time arguments of a native passthrough cell (Foolbox takes eps at call time)."""
        return {}

    @abstractmethod
    def native_class(self, native: str) -> type:
        """Import the toolkit lazily and return the class named `native`."""

    @abstractmethod
    def build(self, translation: Translation, spec: AttackSpec, model: SharedModel | KerasModel) -> AttackFn:
        """An attack function (x, y, targets) -> x_adv for batches on the model's device."""

    @staticmethod
    def goal(spec: AttackSpec, y: torch.Tensor, targets: torch.Tensor | None) -> torch.Tensor:
        """The labels a toolkit is given: the true labels untargeted (never its own guess from the model's
        predictions), the bridge's targets targeted (never a toolkit's own choice of target)."""
        if spec.targeted == "none":
            return y
        if targets is None:
            raise ValueError(f"{spec.label}: a targeted attack needs targets")
        return targets

    @staticmethod
    def output(x_adv: Any, model: SharedModel | KerasModel) -> torch.Tensor:
        """Every adapter returns float32 torch tensors on the model's device, detached (from numpy, torch or TF)."""
        if not isinstance(x_adv, torch.Tensor | np.ndarray):
            x_adv = np.array(x_adv)  # a TensorFlow tensor (its numpy view is read-only)
        return torch.as_tensor(x_adv).detach().to(device=model.device, dtype=torch.float32)


def get_adapter(toolkit: str) -> ToolkitAdapter:
    return importlib.import_module(ADAPTER_MODULES[toolkit]).ADAPTER
