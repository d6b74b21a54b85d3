"""Reading a scenario: YAML, `--set` overrides, validation in full, and each study kind's plan.

Everything is checked before anything runs: an unknown key, a wrong type, an unknown attack or toolkit,
an impossible combination or an option the native class does not take gives one `ScenarioError` line
naming the file, the key path and what is allowed.
"""

from __future__ import annotations

import copy
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from bridge.core.errors import ScenarioError
from bridge.data.config import DatasetError
from bridge.data.dataset import n_classes
from bridge.data.files import missing
from bridge.defences.grid import model_of
from bridge.scenario import reading
from bridge.scenario.schema import Scenario

__all__ = ["Plan", "ScenarioError", "load", "load_raw"]


@dataclass
class Plan:
    """A validated scenario, ready to run: the scenario and each study kind's plan."""

    source: str  # the file as written ('' for a scenario built in Python)
    path: str
    scenario: Any  # a Scenario
    raw: dict[str, Any]
    studies: dict[str, Any] = field(default_factory=dict)  # kind name -> its plan
    data_missing: str | None = None  # the data is not on this machine (and not to be downloaded): refused

    @property
    def cells(self) -> list[Any]:
        """The evasion grid's cells (none when the scenario has no attacks)."""
        return self.studies.get("evasion", [])


def _path(loc: tuple) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """The config classes an annotation can hold: through Optional, list, Annotated and unions."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    if typing.get_origin(annotation) is typing.Annotated:
        return _models_in(typing.get_args(annotation)[0])
    if typing.get_origin(annotation) in (list, typing.Union, types.UnionType):
        return [m for a in typing.get_args(annotation) for m in _models_in(a)]
    return []


def _fields_at(model: type[BaseModel], loc: tuple) -> list[str]:
    """The keys allowed at `loc` (the parent of an unknown key), found by walking the schema. In a union of
    configs (e.g. membership attacks, told apart by `attack`), pydantic names the member it tried: its tag."""
    nodes: list[type[BaseModel]] = [model]
    for part in loc:
        if isinstance(part, int):
            continue
        fields = [n.model_fields[part].annotation for n in nodes if part in n.model_fields]
        if fields:
            nodes = _models_in(fields[0])
        else:  # a union member's tag: the class whose Literal field holds it, or its class name
            nodes = [n for n in nodes if part == n.__name__ or any(
                part in typing.get_args(f.annotation) for f in n.model_fields.values())] or nodes  # fmt: skip
    return list(nodes[0].model_fields)


def _pydantic_message(err: ValidationError) -> str:
    # An unknown key is usually a misspelt one, which also makes its intended key "missing": report it first.
    first = sorted(err.errors(), key=lambda e: e["type"] != "extra_forbidden")[0]
    loc = tuple(p for p in first["loc"] if not (isinstance(p, str) and "[" in p))
    if first["type"] == "extra_forbidden":
        allowed = ", ".join(_fields_at(Scenario, loc[:-1]))
        msg = f"{_path(loc)}: unknown key; allowed: {allowed}"
    elif first["type"] == "missing":
        msg = f"{_path(loc)}: required key is missing"
    elif first["type"] == "value_error":  # the bridge's own checks: the message names what is wrong and allowed
        text = first["msg"].removeprefix("Value error, ")
        msg = f"{_path(loc)}: {text}" if loc else text
    else:
        msg = f"{_path(loc)}: {first['msg']} (got {first['input']!r})"
    more = len(err.errors()) - 1
    return msg + (f" (and {more} more error{'s' * (more > 1)})" if more else "")


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """`key.path=value` assignments (YAML values; list items by index, e.g. attacks.0.steps=40)."""
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ScenarioError(f"--set {item}: expected key.path=value")
        node: Any = raw
        parts = key.split(".")
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            if isinstance(node, list):
                if not part.isdigit() or int(part) >= len(node):
                    raise ScenarioError(f"--set {item}: '{part}' is not an index of {'.'.join(parts[:i])}")
                part = int(part)
            elif not isinstance(node, dict):
                raise ScenarioError(f"--set {item}: {'.'.join(parts[:i])} is not a mapping")
            if last:
                try:
                    node[part] = reading.parse(value)
                except reading.YamlError as exc:
                    raise ScenarioError(f"--set {key}: {exc}") from None
            else:
                node = node.setdefault(part, {}) if isinstance(node, dict) else node[part]
    return raw


def load(path: str | Path, overrides: list[str] | None = None) -> Plan:
    """Read, override, validate and plan a scenario file; any problem is one ScenarioError line."""
    path = Path(path)
    try:
        source, raw = reading.read(path)
    except OSError as exc:
        raise ScenarioError(f"{path}: cannot read the scenario file ({exc.strerror})") from None
    except reading.YamlError as exc:
        raise ScenarioError(f"{path}: {exc}") from None
    return load_raw(raw, overrides, source=source, path=str(path))


def _require_frameworks(scenario: Any) -> None:
    """A Keras model needs TensorFlow (an optional extra): say so in one line before anything runs."""
    from bridge.models.keras import TensorFlowMissing, require_tensorflow

    for i, cfg in enumerate(scenario.model_list):
        if cfg.framework == "keras":
            key = f"models[{i}]" if scenario.models is not None else "model"
            try:
                require_tensorflow()
            except TensorFlowMissing as exc:
                raise ScenarioError(f"{key}.framework: keras: {exc}") from None


def _check_training_attacks(scenario: Any, n_classes: int) -> None:
    """An adversarial training's attack must be one its toolkit can run: refused here, not after the data loads."""
    for i, cfg in enumerate(scenario.model_list):
        for j, entry in enumerate(scenario.defences):
            model = model_of(cfg, entry)
            adversarial = model.training.adversarial
            if adversarial is None:
                continue
            key = f"defences[{j}]" if model is not cfg else (f"models[{i}]" if scenario.models else "model")
            try:
                adversarial.check(n_classes)
            except ValueError as exc:
                raise ScenarioError(f"{key}: {exc}") from None


def _refuse_nan(value: Any, where: tuple = ()) -> None:
    """NaN is never a setting (a NaN budget would report robust accuracy = clean accuracy): refused at any depth,
    `options` included. (Infinite numbers are refused by the schema where a finite one is meant.)"""
    if isinstance(value, float) and math.isnan(value):
        raise ScenarioError(f"{_path(where)}: NaN is not a value; give a number")
    if isinstance(value, dict):
        for k, v in value.items():
            _refuse_nan(v, (*where, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _refuse_nan(v, (*where, i))


def load_raw(raw: Any, overrides: list[str] | None = None, *, source: str = "", path: str = "<scenario dict>") -> Plan:
    """Validate and plan a scenario given as a mapping (what the YAML file holds)."""
    if not isinstance(raw, dict):
        raise ScenarioError(f"{path}: (top level): expected a mapping of scenario keys")
    raw = copy.deepcopy(raw)
    try:
        raw = apply_overrides(raw, overrides or [])
        _refuse_nan(raw)
        scenario = Scenario.model_validate(raw)
        absent = missing(scenario.data)
        if absent and scenario.data.dataset in ("image_folder", "npz"):  # their class count is in the files
            raise ScenarioError(f"data: {absent}")
        _require_frameworks(scenario)
        classes = n_classes(scenario.data)
        studies = {kind.name: kind.plan(scenario, classes) for kind in scenario.kinds}
        _check_training_attacks(scenario, classes)
    except ValidationError as exc:
        raise ScenarioError(f"{path}: {_pydantic_message(exc)}") from None
    except (ScenarioError, DatasetError) as exc:
        raise ScenarioError(f"{path}: {exc}") from None
    return Plan(source, path, scenario, raw, studies, absent)
