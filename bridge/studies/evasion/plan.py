"""The evasion grid planned: every entry x toolkit x eps as a resolved spec and its translation (or why the toolkit
cannot run it), then the tasks of a study: per victim, its probe, every cell, the transfers and the detector."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from bridge.attacks.adapter import Translation
from bridge.attacks.catalogue import CATALOGUE, ITERATIVE, NATIVE
from bridge.attacks.spec import AttackSpec, SpecError, resolve_attack
from bridge.core.errors import ScenarioError
from bridge.engine.batch import fixed
from bridge.engine.recipe import NONE, Recipe
from bridge.engine.task import Task
from bridge.studies.evasion.checks import DETERMINISTIC_PARITY
from bridge.studies.evasion.config import AttackEntry, thief_of
from bridge.studies.evasion.naming import cell_name, variants

STUDY = "evasion"


@dataclass
class Cell:
    """One grid cell: its spec, and either its translation or why the toolkit cannot run it."""

    index: int  # the attack entry it came from
    spec: AttackSpec
    translation: Translation | None = None
    unsupported: str | None = None
    origin: str = "scenario"  # or the `checks` option that added it
    variant: str = ""  # how it differs from the grid's other cells of its attack, norm, eps and toolkit (naming.py)


def _check_entries(scenario: Any, width: float) -> list[tuple[str, AttackEntry]]:
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


def expand(scenario: Any) -> list[tuple[int, str, AttackSpec, str]]:
    """The grid: each entry x its toolkits x its eps values, as resolved specs, then any cells `checks:` adds
    (checks.large_eps at the data's whole input range). Returns (entry index, toolkit, spec, origin)."""
    lo, hi = scenario.data.bounds
    entries = [("scenario", e) for e in scenario.attacks] + _check_entries(scenario, hi - lo)
    cells = []
    for i, (origin, entry) in enumerate(entries):
        fields = entry.model_dump(exclude={"toolkit", "eps"})
        fields["seed"] = scenario.seed if entry.seed is None else entry.seed
        # `batch_size: auto` stays `auto` in the spec, so in the cell's key: the key must be known before any cell
        # runs (a resumed study skips the cells done), and the number is found only where the cell runs, on its
        # device, which the driver may not have. A study resumed on another device reuses its cells although that
        # device might pick another batch: a per-sample attack's result does not depend on its batch (reproduce.py
        # leaves batch_size out) but possibly through random starts drawn per batch. A cell's row and params say its
        # batch.
        for eps in entry.eps:
            for toolkit in entry.toolkit:
                try:
                    spec = resolve_attack({**fields, "toolkit": toolkit, "eps": eps, "batch_size": scenario.batch_size})
                except SpecError as exc:
                    raise ScenarioError(f"attacks[{i}].{exc.field}: {exc.message}") from None
                cells.append((i, toolkit, spec, origin))
    return cells


def plan_cells(scenario: Any, n_classes: int) -> list[Cell]:
    """Translate every cell through its adapter; refuse entries no listed toolkit can run."""
    from bridge.attacks.adapter import Unsupported, get_adapter
    from bridge.attacks.options import option_problem

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
        cls = adapter.native_class(translation.native)
        for name, value in spec.options.items():
            if problem := option_problem(cls, name, value):
                raise ScenarioError(f"attacks[{i}].options.{name}: {toolkit} {translation.native}: {problem}")
        cells.append(Cell(i, spec, translation, origin=origin))
    for cell, variant in zip(cells, variants([c.spec for c in cells]), strict=True):
        cell.variant = variant
    for i, entry in enumerate(scenario.attacks):
        mine = [c for c in cells if c.index == i]
        if all(c.unsupported for c in mine):
            reasons = "; ".join(sorted({c.unsupported for c in mine}))
            raise ScenarioError(f"attacks[{i}]: no listed toolkit can run {entry.attack} {entry.norm}: {reasons}")
    return cells


def base_row(spec: AttackSpec, native: str | None, recipe: Recipe, status: str, variant: str = "") -> dict[str, Any]:
    """A cell's identity columns in the comparison table."""
    return {
        "model": recipe.name,
        "defence": recipe.defence_name,
        "dataset": recipe.data["dataset"],
        "attack": f"native:{spec.native}" if spec.attack == NATIVE else spec.attack,
        "norm": spec.norm,
        "eps": spec.eps,
        "targeted": spec.targeted,
        "variant": variant,
        "evaluation": "direct",
        "source": recipe.name,  # the model the examples were made on (another one for a transfer)
        "toolkit": spec.toolkit,
        "native_class": native,
        "status": status,
    }


def _detector_cell(spec: AttackSpec, detector: Any) -> bool:
    return detector is not None and (spec.attack, spec.norm, spec.eps) == (detector.attack, detector.norm, detector.eps)


def _parity_cell(spec: AttackSpec) -> bool:
    """Examples the parity check compares across toolkits (deterministic attacks)."""
    return (spec.attack, spec.norm) in DETERMINISTIC_PARITY and not spec.random_start


def transfer_pairs(scenario: Any, recipes: list[Recipe]) -> list[tuple[Recipe, Recipe]]:
    """(source, target) victims whose cells' examples the target judges: `defences`, each undefended model's onto
    its preprocessing-defended versions; `models`, every victim's onto every other. Each pair once, in plan order."""
    pairs: dict[tuple[str, str], tuple[Recipe, Recipe]] = {}
    if "defences" in scenario.transfer:
        for target in (r for r in recipes if r.preprocessing):
            for source in (r for r in recipes if r.base == target.base and r.defence == NONE):
                pairs[source.key, target.key] = (source, target)
    if "models" in scenario.transfer:
        pairs |= {(s.key, t.key): (s, t) for s in recipes for t in recipes if s.key != t.key}
    return list(pairs.values())


def tasks(scenario: Any, cells: list[Cell], recipes: list[Recipe], n_samples: int) -> tuple[list[Task], dict]:
    """The study's tasks and what its aggregation needs to know besides their results (`meta`, JSON).

    Per victim: one `victim` task (clean accuracy, the model-level checks, ART's metrics when `robustness:` asks),
    one `attack` task per supported cell, a `transfer` task per cell of a source victim and target victim that
    `transfer:` pairs, a `surrogate` task per cell and model stolen from the victim (`transfer_from:`), and a
    `detector` task that depends on its attack's cells."""
    pairs = transfer_pairs(scenario, recipes)
    sources = {s.key for s, _ in pairs}
    suffix = len(recipes) > 1
    out: list[Task] = []
    attacks: dict[str, list[Task]] = {}
    rows: list[dict[str, Any]] = []  # the comparison table's direct rows in order: a task's key, or a row
    for recipe in recipes:
        out.append(_victim_task(scenario, recipe))
        attacks[recipe.key] = []
        for cell in cells:
            if cell.unsupported:
                rows.append(
                    {"row": base_row(cell.spec, None, recipe, f"unsupported: {cell.unsupported}", cell.variant)}
                )
                continue
            needed = recipe.key in sources or _detector_cell(cell.spec, scenario.detector)
            task = _attack_task(cell, recipe, n_samples, suffix, needed, scenario.export)
            attacks[recipe.key].append(task)
            rows.append({"task": task.key, "variant": cell.variant})
        out += attacks[recipe.key]
    for source, target in pairs:
        out += [_transfer_task(made, source, target) for made in attacks[source.key]]
    for (recipe_key, entry), stolen in _thieves(scenario, recipes).items():
        out += [_surrogate_task(made, stolen, entry) for made in attacks[recipe_key]]
    if scenario.detector is not None:
        out += [_detector_task(scenario.detector, recipe, attacks[recipe.key]) for recipe in recipes]
    meta = {"rows": rows, "defences": len(scenario.defences), "scenario": scenario.name,
            "matrix": "models" in scenario.transfer}  # fmt: skip
    return out, meta


def _victim_task(scenario: Any, recipe: Recipe) -> Task:
    robustness = scenario.robustness
    if robustness is not None and "seed" not in robustness.model_fields_set:
        robustness = robustness.model_copy(update={"seed": scenario.seed})
    params = {"robustness": None if robustness is None else robustness.model_dump(mode="json")}
    return Task(STUDY, "victim", recipe, params, f"victim {recipe.name}", toolkits=("art",) if robustness else ())


def _attack_task(cell: Cell, recipe: Recipe, n_samples: int, suffix: bool, needed: bool, export: str) -> Task:
    """One cell on one victim; its examples are stored where a later task (`needed`) or the parity check reads them,
    and exported (`examples.npz`) when the scenario asks."""
    spec = cell.spec
    params = {"spec": spec.model_dump(mode="json"), "translation": cell.translation.as_dict(), "origin": cell.origin}
    if export != "none":  # part of the task's identity: a resumed study with export on writes the files it lacks
        params["export"] = export
    label = cell_name(spec, cell.variant, recipe.name if suffix else None)
    units = math.ceil(n_samples / fixed(spec.batch_size))  # `auto`: batches of DEFAULT (CPU); a GPU runs fewer
    return Task(STUDY, "attack", recipe, params, label, toolkits=(spec.toolkit,), units=units,
                keep=needed or _parity_cell(spec), payload=cell.translation)  # fmt: skip


def _transfer_task(made: Task, source: Recipe, recipe: Recipe) -> Task:
    """The examples of cell `made` (on `source`) judged by another victim, `recipe`."""
    params = {"spec": made.params["spec"], "from": source.name}
    return Task(STUDY, "transfer", recipe, params, f"{made.label} → {recipe.name} (transfer)", depends=(made.key,))


def _thieves(scenario: Any, recipes: list[Recipe]) -> dict[tuple[str, str], Task]:
    """The extraction study's `extract` task of each (victim, `transfer_from` entry): the same tasks (the same keys)
    the extraction kind plans, so a surrogate cell takes the thief its task stole as its input."""
    if not scenario.transfer_from:
        return {}
    from bridge.studies.extraction import plan as extraction

    planned, _ = extraction.tasks(scenario, extraction.plan(scenario), recipes)
    by = {(t.recipe.key, (t.params["label"], t.params["budget"])): t for t in planned if t.kind == "extract"}
    wanted = {entry: thief_of(entry, scenario.extraction) for entry in scenario.transfer_from}
    return {(r.key, entry): by[r.key, wanted[entry]] for r in recipes for entry in scenario.transfer_from}


def _surrogate_task(made: Task, stolen: Task, entry: str) -> Task:
    """Cell `made` crafted on the thief `stolen` took from the same victim, judged by that victim."""
    params = {"spec": made.params["spec"], "translation": made.params["translation"], "from": f"thief:{entry}"}
    return Task(STUDY, "surrogate", made.recipe, params, f"{made.label} ← thief {entry} (transfer)",
                depends=(stolen.key,), toolkits=made.toolkits, units=made.units, payload=made.payload)  # fmt: skip


def _detector_task(detector: Any, recipe: Recipe, attacks: list[Task]) -> Task:
    """The detector on `recipe`, over the examples of its untargeted cells of the detector's attack."""
    cells = [t for t in attacks if t.keep and t.params["spec"]["targeted"] == "none"
             and _detector_cell(AttackSpec.model_validate(t.params["spec"]), detector)]  # fmt: skip
    label = f"detector {detector.attack}-{detector.norm} eps={detector.eps:g} | {recipe.name}"
    return Task(STUDY, "detector", recipe, {"detector": detector.model_dump(mode="json")}, label,
                depends=tuple(t.key for t in cells), toolkits=("art",))  # fmt: skip
