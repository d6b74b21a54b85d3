"""The command that reproduces one cell of a study as it ran: `advbridge run FILE --set ...` (or the `run_scenario`
call for a scenario built in Python), recovered from the scenario as written and as resolved.

The parent records the file as written and the scenario as resolved, not the run's own `--set` values: they are
recovered as the differences between the two, outside the keys a cell's command sets itself.
"""

from __future__ import annotations

import copy
import shlex
from typing import Any

import pandas as pd
import yaml
from pydantic import BaseModel, ValidationError
from pydantic_core import to_jsonable_python

from bridge.attacks.catalogue import NATIVE
from bridge.defences.grid import TrainingDefence, entry_name, parse_entry
from bridge.defences.preprocessing import DEFENCE_CLASSES
from bridge.models.config import ModelConfig
from bridge.scenario import reading
from bridge.scenario.load import apply_overrides
from bridge.scenario.schema import Scenario
from bridge.studies.evasion.config import transfer_kinds

# Scenario keys that say where a study runs, or that a cell's command sets itself: never recovered as overrides.
NOT_RECOVERED = ("name", "tracking", "executor", "ray", "attacks", "transfer", "checks", "robustness", "detector")


def flow(value: Any) -> str:
    """`value` as one line of YAML (flow style), as `--set` reads it."""
    text = yaml.safe_dump(value, default_flow_style=True, width=1 << 20, sort_keys=False)
    return text.removesuffix("\n...\n").strip()


def attack_entry(spec: dict[str, Any]) -> dict[str, Any]:
    """A scenario attack entry that resolves to exactly `spec`: its fields that are set (the batch size is the
    scenario's; a native attack takes no loss)."""
    left_out = {"batch_size", "loss"} if spec["attack"] == NATIVE else {"batch_size"}
    entry = {k: v for k, v in spec.items() if v is not None and v != {} and k not in left_out}
    if entry.get("targeted") == "none":
        del entry["targeted"]
    first = [k for k in ("attack", "norm", "eps", "toolkit") if k in entry]
    return {k: entry[k] for k in first} | entry


def _differences(written: Any, resolved: Any, path: str) -> list[tuple[str, Any]]:
    """(key.path, value) wherever `resolved` differs from `written`: mappings and same-length lists by their
    items, anything else whole."""
    if isinstance(written, dict) and isinstance(resolved, dict):
        return [d for k, v in resolved.items() for d in _differences(written.get(k), v, f"{path}.{k}")]
    if isinstance(written, list) and isinstance(resolved, list) and len(written) == len(resolved):
        return [d for i, (w, r) in enumerate(zip(written, resolved, strict=True))
                for d in _differences(w, r, f"{path}.{i}")]  # fmt: skip
    return [] if written == resolved else [(path, resolved)]


def run_overrides(written: dict[str, Any], resolved: dict[str, Any]) -> list[str] | None:
    """The `--set` assignments that turn the scenario file as written into the study as run (the run's own
    overrides, which the parent does not record): every value of the validated file that differs from the
    resolved scenario, outside NOT_RECOVERED. None when the file does not validate on its own."""
    try:
        dumped = Scenario.model_validate(written).model_dump(mode="json")
    except ValidationError:
        return None
    found = [d for k, v in resolved.items() if k not in NOT_RECOVERED for d in _differences(dumped.get(k), v, k)]
    return [f"{path}={flow(value)}" for path, value in found]


def _model_name(entry: dict[str, Any]) -> str:
    return entry.get("name") or ModelConfig.model_validate(entry).name


def _defence_name(entry: str | dict[str, Any]) -> str:
    return "none" if entry == "none" else entry.get("name") or entry_name(parse_entry(entry))


def minimal(cls: type[BaseModel], data: dict[str, Any]) -> dict[str, Any]:
    """`data`, a JSON dump of `cls`, without the values its fields default to: what validates again (some checks
    refuse a key that does not apply even at its default value)."""
    out = {}
    for key, value in data.items():
        field = cls.model_fields.get(key)
        if field is not None and not field.is_required():
            if value == to_jsonable_python(field.get_default(call_default_factory=True)):
                continue
            if (
                isinstance(field.annotation, type)
                and issubclass(field.annotation, BaseModel)
                and isinstance(value, dict)
            ):
                value = minimal(field.annotation, value)
        out[key] = value
    return out


def _minimal_entries(resolved: dict[str, Any]) -> dict[str, Any]:
    """The resolved scenario with its models and defences as entries that validate again (see `minimal`)."""
    defences = [d if d == "none" else minimal(DEFENCE_CLASSES.get(d["kind"], TrainingDefence), d)
                for d in resolved["defences"]]  # fmt: skip
    models = [minimal(ModelConfig, m) for m in resolved.get("models") or []]
    return {**resolved, "defences": defences} | ({"models": models} if models else {})


def cell_overrides(effective: dict[str, Any], spec: dict[str, Any], row: pd.Series) -> dict[str, Any]:
    """The top-level values that make the study of `effective` (a scenario as run) this one cell: its attack entry,
    its model and defence alone (a transferred row: with the model its examples were made on), and nothing else
    that runs."""
    transferred = row["evaluation"] == "transfer"
    out: dict[str, Any] = {"attacks": [attack_entry(spec)]}
    # a victim is named `<model>` or `<model>/<defence>`; neither name may hold a "/"
    victims = [row["model"].partition("/"), *([row["source"].partition("/")] if transferred else [])]
    models = effective.get("models") or []
    if len(models) > 1:
        out["models"] = [m for m in models if _model_name(m) in {base for base, _, _ in victims}]
    defences = effective.get("defences") or ["none"]
    if len(defences) > 1:
        keep = {defence or "none" for _, _, defence in victims}
        out["defences"] = [d for d in defences if _defence_name(d) in keep]
    made = transfer_kinds(effective.get("transfer"))  # an older study's is a bool
    if transferred:  # the one kind of transfer that made this row (`defences` refuses a grid without a defence)
        (target, _, _), (source, _, source_defence) = victims
        kind = "defences" if "defences" in made and source == target and not source_defence else "models"
        if made != [kind]:
            out["transfer"] = [kind]
    elif made:
        out["transfer"] = False
    out |= {key: None for key in ("detector", "robustness") if effective.get(key) is not None}
    if any((effective.get("checks") or {}).values()):
        out["checks"] = {}
    return out


def reproduce(file: str, effective: dict[str, Any], recovered: list[str], spec: dict[str, Any], row: pd.Series) -> str:
    """The command that runs this cell alone as the study ran it: `advbridge run FILE --set ...` (`file` empty: the
    `run_scenario` call, for a scenario built in Python). `effective`: the scenario as run; `recovered`: the run's
    own overrides (see `run_overrides`)."""
    cell = cell_overrides(effective, spec, row)
    kept = [a for a in recovered if a.partition("=")[0].split(".")[0] not in cell]
    assignments = kept + [f"{k}={flow(v)}" for k, v in cell.items()]
    if not file:
        lines = "".join(f"    {a!r},\n" for a in assignments)
        return f"from bridge import run_scenario\n\nrun_scenario(scenario, [\n{lines}])"
    parts = [f"advbridge run {shlex.quote(file)}", *(f"--set {shlex.quote(a)}" for a in assignments)]
    return " \\\n  ".join(parts)


def scenario_as_run(
    scenario_file: str, scenario_text: str, resolved: dict[str, Any]
) -> tuple[dict[str, Any], list[str] | None]:
    """The scenario as the study ran it (the file as written with the run's own overrides, else the resolved
    scenario), and those overrides (None: the file does not validate on its own, so they are not known)."""
    if not scenario_file:
        return _minimal_entries(resolved), []
    written = reading.recorded(scenario_text)
    recovered = run_overrides(written, resolved)
    return apply_overrides(copy.deepcopy(written), recovered or []), recovered


# --- rendering -------------------------------------------------------------------------------------------------


def commands(
    table: pd.DataFrame,
    specs: dict[str, dict[str, Any]],
    scenario_file: str,
    scenario_text: str,
    resolved: dict[str, Any],
) -> tuple[dict[str, str], list[str] | None]:
    """Per child run id of `table`, the command that reproduces its cell; and the run's own overrides (None when
    they cannot be recovered)."""
    effective, recovered = scenario_as_run(scenario_file, scenario_text, resolved)
    out = {}
    for _, row in table.iterrows():
        spec = specs.get(row["run_id"]) if pd.notna(row["run_id"]) else None
        if spec:
            out[row["run_id"]] = reproduce(scenario_file, effective, recovered or [], spec, row)
    return out, recovered
