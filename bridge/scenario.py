"""Scenario files: the YAML schema, `--set` overrides, grid expansion, and validation in full.

Everything is checked before anything runs: an unknown key, a wrong type, an unknown attack or toolkit,
an impossible combination or an option the native class does not take gives one `ScenarioError` line
naming the file, the key path and what is allowed.
"""

from __future__ import annotations

import copy
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from bridge.attacks.catalogue import ATTACK_NAMES, CATALOGUE, ITERATIVE
from bridge.attacks.spec import TOOLKITS, AttackSpec, Budget, SpecError, Tuning, resolve_attack
from bridge.data.config import DataConfig, DatasetError
from bridge.data.files import missing
from bridge.defences.detector import DetectorConfig
from bridge.defences.grid import NONE, TrainingDefence, check_entries, parse_entry
from bridge.models.config import ModelConfig
from bridge.studies.evasion.model_metrics import ModelMetricsConfig


class ScenarioError(ValueError):
    """A scenario that cannot run; str() is the one-line message shown to the user."""


def _as_list(value: Any) -> Any:
    return value if isinstance(value, list) else [value]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TrackingConfig(Strict):
    uri: str | None = None  # default: $MLFLOW_TRACKING_URI, else sqlite:///mlruns/mlflow.db
    experiment: str | None = None  # default: the scenario name


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


class Scenario(Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    seed: int = 0
    device: str = Field(default="auto", pattern=r"^(auto|cpu|cuda(:\d+)?)$")
    precision: Literal["fp32", "bf16"] = "fp32"  # bf16: the model's forward under autocast, for every toolkit
    batch_size: int = Field(default=128, gt=0)
    data: DataConfig = DataConfig()
    model: ModelConfig | None = None  # one model ...
    models: list[ModelConfig] | None = Field(default=None, min_length=1)  # ... or several, compared side by side
    attacks: list[AttackEntry] = Field(min_length=1)
    tracking: TrackingConfig = TrackingConfig()
    checks: ChecksConfig = ChecksConfig()
    # The defences axis (bridge/defence_grid.py): each entry x each model is one defended model every cell runs on.
    defences: list[Annotated[Any, BeforeValidator(parse_entry)]] = Field(default=[NONE], min_length=1)
    transfer: bool = False  # also evaluate each preprocessing-defended model on the examples made on its model
    robustness: ModelMetricsConfig | None = None  # CLEVER, empirical robustness, loss sensitivity per model
    detector: DetectorEntry | None = None

    @model_validator(mode="after")
    def _models(self) -> Scenario:
        if self.model is not None and self.models is not None:
            raise ValueError("give either model (one) or models (a list), not both")
        names = [m.name for m in self.model_list]
        if len(set(names)) < len(names):
            raise ValueError(f"models need distinct names (set name:); got {', '.join(names)}")
        check_entries(self.defences, self.model_list, ValueError)
        if self.transfer and not (NONE in self.defences and any(d != NONE and not isinstance(d, TrainingDefence)
                                                                for d in self.defences)):  # fmt: skip
            raise ValueError("transfer evaluates preprocessing defences on examples made on the undefended model: "
                             "defences needs none and at least one preprocessing defence")  # fmt: skip
        if self.detector is not None and self.detector.train_toolkit not in self._toolkits(self.detector.attack):
            raise ValueError(f"detector: no {self.detector.train_toolkit} cell of {self.detector.attack} in attacks")
        keras = [m.name for m in self.model_list if m.framework == "keras"]
        if self.precision == "bf16" and keras:
            raise ValueError(f"precision bf16 applies to PyTorch models; {', '.join(keras)} is a Keras model")
        return self

    def _toolkits(self, attack: str) -> set[str]:
        return {t for entry in self.attacks if entry.attack == attack for t in entry.toolkit}

    @property
    def model_list(self) -> list[ModelConfig]:
        return self.models or [self.model or ModelConfig()]


@dataclass
class Cell:
    """One grid cell: its spec, and either its translation or why the toolkit cannot run it."""

    index: int  # the attack entry it came from
    spec: AttackSpec
    translation: Any = None  # bridge.adapter.Translation
    unsupported: str | None = None
    origin: str = "scenario"  # or the `checks` option that added it


@dataclass
class Plan:
    """A validated scenario, ready to run."""

    source: str  # the file as written ('' for a scenario built in Python)
    path: str
    scenario: Scenario
    cells: list[Cell]
    raw: dict[str, Any]
    data_missing: str | None = None  # the data is not on this machine: `run` refuses, `validate` says so


def _path(loc: tuple) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _fields_at(model: type[BaseModel], loc: tuple) -> list[str]:
    """The keys allowed at `loc` (the parent of an unknown key), found by walking the schema."""
    node: Any = model
    for part in loc:
        if isinstance(part, int):
            continue
        annotation = node.model_fields[part].annotation
        for _ in range(3):  # unwrap Optional[...] and list[...]
            args = [a for a in typing.get_args(annotation) if a is not type(None)]
            if isinstance(annotation, type) and issubclass(annotation, BaseModel) or not args:
                break
            if typing.get_origin(annotation) in (list, typing.Union, types.UnionType):
                annotation = args[0]
        node = annotation
    return list(node.model_fields)


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
                node[part] = yaml.safe_load(value)
            else:
                node = node.setdefault(part, {}) if isinstance(node, dict) else node[part]
    return raw


def _check_entries(scenario: Scenario, width: float) -> list[tuple[str, AttackEntry]]:
    """The attack entries that `checks:` adds: (origin, entry)."""
    added = []
    if scenario.checks.large_eps:
        toolkits = sorted({t for e in scenario.attacks for t in e.toolkit})
        entry = AttackEntry(attack="pgd", norm="linf", eps=width, steps=20, step_size=width / 10,
                            random_start=False, toolkit=toolkits)  # fmt: skip
        added.append(("checks.large_eps", entry))
    if scenario.checks.double_steps:
        for e in scenario.attacks:
            if e.attack in ITERATIVE:
                steps = 2 * (e.steps or CATALOGUE[e.attack].defaults["steps"])
                eps = max(v for v in e.eps if v is not None)
                added.append(("checks.double_steps", e.model_copy(update={"steps": steps, "eps": [eps]})))
    return added


def expand(scenario: Scenario, width: float = 1.0) -> list[tuple[int, str, AttackSpec, str]]:
    """The grid: each entry x its toolkits x its eps values, as resolved specs, then any cells `checks:` adds.

    Yields (entry index, toolkit, spec, origin); `width` is the input range (for checks.large_eps).
    """
    entries = [("scenario", e) for e in scenario.attacks] + _check_entries(scenario, width)
    cells = []
    for i, (origin, entry) in enumerate(entries):
        fields = entry.model_dump(exclude={"toolkit", "eps"})
        fields["seed"] = scenario.seed if entry.seed is None else entry.seed
        for eps in entry.eps:
            for toolkit in entry.toolkit:
                try:
                    spec = resolve_attack({**fields, "toolkit": toolkit, "eps": eps, "batch_size": scenario.batch_size})
                except SpecError as exc:
                    raise ScenarioError(f"attacks[{i}].{exc.field}: {exc.message}") from None
                cells.append((i, toolkit, spec, origin))
    return cells


def plan_scenario(scenario: Scenario, n_classes: int) -> list[Cell]:
    """Translate every cell through its adapter; refuse entries no listed toolkit can run."""
    from bridge.attacks.adapter import Unsupported, get_adapter

    cells: list[Cell] = []
    for i, toolkit, spec, origin in expand(scenario):
        adapter = get_adapter(toolkit)
        try:
            translation = adapter.translate(spec, n_classes)
        except Unsupported as exc:
            cells.append(Cell(i, spec, unsupported=str(exc), origin=origin))
            continue
        try:
            adapter.check(translation)
        except ValueError as exc:
            raise ScenarioError(f"attacks[{i}].options: {exc}") from None
        cells.append(Cell(i, spec, translation, origin=origin))
    for i, entry in enumerate(scenario.attacks):
        mine = [c for c in cells if c.index == i]
        if all(c.unsupported for c in mine):
            reasons = "; ".join(sorted({c.unsupported for c in mine}))
            raise ScenarioError(f"attacks[{i}]: no listed toolkit can run {entry.attack} {entry.norm}: {reasons}")
    return cells


def load(path: str | Path, overrides: list[str] | None = None) -> Plan:
    """Read, override, validate and plan a scenario file; any problem is one ScenarioError line."""
    path = Path(path)
    try:
        source = path.read_text()
    except OSError as exc:
        raise ScenarioError(f"{path}: cannot read the scenario file ({exc.strerror})") from None
    try:
        raw = yaml.safe_load(source)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ScenarioError(f"{path}: not valid YAML{where}: {getattr(exc, 'problem', exc)}") from None
    return load_raw(raw, overrides, source=source, path=str(path))


def _require_frameworks(scenario: Scenario) -> None:
    """A Keras model needs TensorFlow (an optional extra): say so in one line before anything runs."""
    from bridge.models.keras import TensorFlowMissing, require_tensorflow

    for i, cfg in enumerate(scenario.model_list):
        if cfg.framework == "keras":
            key = f"models[{i}]" if scenario.models is not None else "model"
            try:
                require_tensorflow()
            except TensorFlowMissing as exc:
                raise ScenarioError(f"{key}.framework: keras: {exc}") from None


def _check_training_attacks(scenario: Scenario, n_classes: int) -> None:
    """An adversarial training's attack must be one its toolkit can run: refused here, not after the data loads."""
    for i, cfg in enumerate(scenario.model_list):
        for j, entry in enumerate(scenario.defences):
            model = entry.apply(cfg) if isinstance(entry, TrainingDefence) else cfg
            adversarial = model.training.adversarial
            if adversarial is None:
                continue
            key = f"defences[{j}]" if model is not cfg else (f"models[{i}]" if scenario.models else "model")
            try:
                adversarial.check(n_classes)
            except ValueError as exc:
                raise ScenarioError(f"{key}: {exc}") from None


def load_raw(raw: Any, overrides: list[str] | None = None, *, source: str = "", path: str = "<scenario dict>") -> Plan:
    """Validate and plan a scenario given as a mapping (what the YAML file holds)."""
    from bridge.data.dataset import n_classes

    if not isinstance(raw, dict):
        raise ScenarioError(f"{path}: (top level): expected a mapping of scenario keys")
    raw = copy.deepcopy(raw)
    try:
        raw = apply_overrides(raw, overrides or [])
        scenario = Scenario.model_validate(raw)
        absent = missing(scenario.data)
        if absent and scenario.data.dataset in ("image_folder", "npz"):  # their class count is in the files
            raise ScenarioError(f"data: {absent}")
        _require_frameworks(scenario)
        cells = plan_scenario(scenario, n_classes(scenario.data))
        _check_training_attacks(scenario, n_classes(scenario.data))
    except ValidationError as exc:
        raise ScenarioError(f"{path}: {_pydantic_message(exc)}") from None
    except (ScenarioError, DatasetError) as exc:
        raise ScenarioError(f"{path}: {exc}") from None
    return Plan(source, path, scenario, cells, raw, absent)
