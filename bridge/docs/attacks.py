"""`docs/attacks.md`, generated from the catalogue and the adapters' own tables.

The parameter mapping is not written by hand: for each table row, each spec field is perturbed in turn and
the native arguments that move are the ones it maps to; arguments that never move are the row's constants.
So the document cannot drift from what the adapters actually pass.
"""

from __future__ import annotations

from typing import Any

from bridge.attacks.adapter import ADAPTER_MODULES, Entry, Notes, ToolkitAdapter, Unsupported, get_adapter, note_clauses
from bridge.attacks.catalogue import CATALOGUE, NATIVE, AttackInfo
from bridge.attacks.spec import AttackSpec, resolve_attack

N_CLASSES = 10
PROBE_EPS = {"linf": 0.1, "l2": 1.0, "l1": 10.0, "l0": 1.0}


def _probe(info: AttackInfo, norm: str, toolkit: str) -> AttackSpec:
    fields: dict[str, Any] = {"attack": info.name, "norm": norm, "toolkit": toolkit, "batch_size": 64}
    fields["eps"] = PROBE_EPS[norm]
    if info.targeted_only:
        fields["targeted"] = "random"
    return resolve_attack(fields)


def _bumped(value: Any, entry: Entry) -> Any:
    """Another valid value: booleans flip, integers step down (a count may not grow past the classes)."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value - 1 if value > 1 else value + 1
    if isinstance(value, float):
        return value * 2 if value else 1.0
    others = [loss for loss in entry.losses if loss != value]
    return {"none": "random", "EN": "L1"}.get(value, others[0] if others else value)


def _render(value: Any) -> str:
    if isinstance(value, float):
        return "inf" if value == float("inf") else f"{value:g}"
    if isinstance(value, (str, int, bool, type(None))):
        return repr(value) if isinstance(value, str) else str(value)
    return type(value).__name__


def _perturbed(spec: AttackSpec, entry: Entry, name: str) -> AttackSpec:
    """`spec` with one field changed; if the row refuses that (e.g. a step tied to eps), the eps-derived
    defaults are derived again from the changed field instead."""
    other = spec.model_copy(update={name: _bumped(getattr(spec, name), entry)})
    if not entry.unsupported(other):
        return other
    info = CATALOGUE[spec.attack]
    raw = other.model_dump(exclude={k for k in info.derived if k != name})
    other = resolve_attack(raw)
    if entry.unsupported(other):
        raise Unsupported(entry.unsupported(other))
    return other


def mapping(adapter: ToolkitAdapter, entry: Entry, spec: AttackSpec) -> tuple[list[str], list[str]]:
    """(native <- spec fields, native = constant) for one table row, found by perturbing the spec."""
    base = {**entry.kwargs(spec, N_CLASSES), **entry.call(spec)}
    sources: dict[str, list[str]] = {k: [] for k in base}
    fields = ["eps", "targeted", "seed", "batch_size", "loss", *CATALOGUE[spec.attack].params, "max_queries"]
    for name in dict.fromkeys(fields):
        if getattr(spec, name) is None:
            continue
        try:
            other = _perturbed(spec, entry, name)
            if other.loss not in entry.losses:
                continue
            moved = {**entry.kwargs(other, N_CLASSES), **entry.call(other)}
        except (Unsupported, KeyError, ValueError):
            continue
        for key, val in moved.items():
            if repr(val) != repr(base.get(key)):
                sources.setdefault(key, []).append(name)
    mapped = [f"`{k}` ← {', '.join(v)}" for k, v in sources.items() if v]
    constants = [f"`{k}` = {_render(base[k])}" for k, v in sources.items() if not v]
    return mapped, constants


def notes_markdown(notes: Notes) -> str:
    """Every clause of an entry's notes; one that holds only for some cells is marked with its condition."""
    return " ".join(text if when is None else f"(when {when.label}) {text}" for when, text in note_clauses(notes))


def _row(toolkit: str, norm: str, info: AttackInfo) -> list[str]:
    adapter = get_adapter(toolkit)
    probe = _probe(info, norm, toolkit)
    entry = adapter.entry(probe)
    if entry is None:
        return [toolkit, "—", "not available in this toolkit", "", ""]
    mapped, constants = mapping(adapter, entry, probe)
    modes = "targeted and untargeted" if entry.targeted else "untargeted only"
    return [toolkit, f"`{entry.native}`", "<br>".join(mapped) or "—", "<br>".join(constants) or "—",
            f"losses: {', '.join(entry.losses)}; {modes}. {notes_markdown(entry.notes)}".strip()]  # fmt: skip


def _defaults(info: AttackInfo) -> str:
    parts = [f"{k}={_render(v)}" for k, v in info.defaults.items()]
    for name, rule in info.derived.items():  # the rule's docstring: "<whose rule>: step = <formula>, ..."
        who, _, formula = (rule.__doc__ or "").partition(":")
        parts.append(f"{name}={formula.split('=', 1)[-1].split(',')[0].strip().rstrip('.')} ({who.strip()})")
    return ", ".join(parts) or "none"


def attacks_markdown() -> str:
    out = [
        "# Attacks",
        "",
        "Generated by `advbridge list attacks --format markdown` from the catalogue",
        "(`bridge/attacks/catalogue.py`) and the adapters' tables (`adapters/`); `tests/test_docs.py` fails when this",
        "file is out of date.",
        "",
        "Every cell passes every parameter of the native class explicitly: `←` maps a spec field to the native",
        "argument (found by perturbing each field), `=` is a constant the adapter writes. Budgets and step sizes",
        "are absolute, in input units. `Differences in meaning` says where a toolkit's class is not the same",
        "algorithm as the others'; numbers from such cells should not be read as disagreement between toolkits.",
        "A clause marked `(when ...)` holds only for the cells that meet the condition (a cell's MLflow description",
        "carries exactly its own clauses).",
        "",
    ]
    for info in CATALOGUE.values():
        out += [f"## {info.name}: {info.title}", ""]
        kind = "fixed-budget (eps is the budget)" if info.kind == "fixed" else "minimum-norm (eps is a threshold)"
        out += [f"Norms: {', '.join(info.norms)}. Kind: {kind}. Access: {info.access}. Loss: {info.loss}."]
        out += [f"Spec fields: {', '.join(info.params) or 'none beyond eps'}. Bridge defaults: {_defaults(info)}."]
        if info.targeted_only:
            out += ["Targeted only: set `targeted: random` or `least_likely`."]
        out += ["", "| toolkit | norm | class | spec field → argument | constants | differences in meaning |",
                "|---|---|---|---|---|---|"]  # fmt: skip
        for norm in info.norms:
            for toolkit in ADAPTER_MODULES:
                cells = [c.replace("|", "\\|") for c in _row(toolkit, norm, info)]
                out.append("| " + " | ".join([cells[0], norm, *cells[1:]]) + " |")
        out.append("")
    out += [
        f"## {NATIVE}: any toolkit class by name",
        "",
        "`attack: native`, `native: <class name>`, `toolkit: <one toolkit>`, `options: {...}`: the class is built with",
        "exactly `options`, checked against its signature. Parameters left out take the toolkit's own defaults, so",
        "such cells are tagged `defaults: toolkit`. The spec's `eps` is the bridge's budget (for metrics and",
        "violations) and Foolbox's call-time `epsilons`; ART and torchattacks classes take their own eps in `options`.",
        "The bridge still computes every metric and enforces `max_queries`.",
        "",
    ]
    return "\n".join(out)
