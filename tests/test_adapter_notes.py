"""A cell's notes (its MLflow description, the report's and toolkits_agree's quote) describe exactly that cell.

An entry's notes are clauses; some hold only for some cells (targeted mode, random starts, restarts, a loss, a
query budget). These tests translate real specs through the three adapters and read the notes they record.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from bridge.attacks.adapter import ADAPTER_MODULES, RESTARTS, TARGETED, Unsupported, get_adapter, note_clauses
from bridge.attacks.catalogue import CATALOGUE
from bridge.attacks.spec import SpecError, resolve_attack
from bridge.docs.attacks import notes_markdown

TOOLKITS = tuple(ADAPTER_MODULES)
EPS = {"linf": 0.1, "l2": 1.0, "l1": 10.0, "l0": 1.0}


def notes(toolkit: str, attack: str, norm: str, **fields: Any) -> str:
    spec = resolve_attack({"attack": attack, "norm": norm, "toolkit": toolkit, "eps": EPS[norm], **fields})
    translation = get_adapter(toolkit).translate(spec, n_classes=10)
    assert isinstance(translation.notes, str) and isinstance(translation.as_dict()["notes"], str)
    return translation.notes


# (toolkit, attack, norm, fields, a clause only targeted cells carry)
TARGETED_CLAUSES = [
    ("art", "apgd", "linf", {"loss": "dlr"}, "Its targeted DLR is the untargeted formula with y = target"),
    ("art", "apgd", "l2", {"loss": "dlr"}, "Its targeted DLR is the untargeted formula with y = target"),
    ("torchattacks", "pgd", "linf", {"loss": "dlr"}, "The targeted DLR needs >= 4 classes."),
]


@pytest.mark.parametrize(("toolkit", "attack", "norm", "fields", "clause"), TARGETED_CLAUSES)
def test_only_targeted_cells_carry_a_targeted_clause(toolkit, attack, norm, fields, clause) -> None:
    untargeted = notes(toolkit, attack, norm, **fields)
    assert untargeted and clause not in untargeted
    for mode in ("random", "least_likely"):
        assert clause in notes(toolkit, attack, norm, targeted=mode, **fields)


@pytest.mark.parametrize(("attack", "norm"), [("boundary", "l2"), ("hopskipjump", "l2"), ("hopskipjump", "linf")])
def test_only_untargeted_art_decision_cells_say_art_attacks_the_prediction(attack: str, norm: str) -> None:
    clause = "Untargeted, ART ignores labels and attacks the prediction"
    assert clause in notes("art", attack, norm)
    targeted = notes("art", attack, norm, targeted="random")
    assert clause not in targeted and "x_adv_init" in targeted  # the shared clauses stay


def test_foolbox_has_no_targeting_clause_and_its_untargeted_only_rows_say_why() -> None:
    """Foolbox's notes hold for targeted and untargeted cells alike; a row without a targeted mode states why
    in every cell (the cell runs untargeted because of it), and its targeted cells are refused."""
    adapter = get_adapter("foolbox")
    conditions = {when.label for entry in adapter.table.values() for when, _ in note_clauses(entry.notes) if when}
    assert conditions and not any("targeted" in label for label in conditions)
    assert "refuse a targeted criterion" in notes("foolbox", "fgsm", "linf")
    with pytest.raises(Unsupported, match="no targeted mode"):
        notes("foolbox", "fgsm", "linf", targeted="random")


RANDOM_START_CLAUSES = {
    ("art", "l2"): "The L2 random start is uniform in the ball",
    ("art", "l1"): "The random start is uniform in the L1 ball.",
    ("foolbox", "l2"): "The L2 random start is uniform in the eps-ball",
    ("foolbox", "l1"): "The L1 random start is uniform in the eps-ball.",
    ("torchattacks", "l2"): "The random start is a Gaussian direction with a U(0,1)*eps radius",
}


@pytest.mark.parametrize(("toolkit", "norm"), list(RANDOM_START_CLAUSES))
def test_random_start_clause_only_with_random_start(toolkit: str, norm: str) -> None:
    clause = RANDOM_START_CLAUSES[toolkit, norm]
    assert clause in notes(toolkit, "pgd", norm, random_start=True)
    without = notes(toolkit, "pgd", norm, random_start=False)
    assert without and "random start" not in without.lower()  # the other clauses stay


RESTART_CLAUSES = {
    "art": "A later restart replaces a sample only where ART's own check finds it adversarial.",
    "foolbox": "Restarts use attack.repeat(R), which keeps each sample's first successful run.",
    "torchattacks": "restarts > 1 run as torchattacks.MultiAttack of R copies",
}


@pytest.mark.parametrize("toolkit", TOOLKITS)
@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_restarts_clause_only_with_more_than_one_restart(toolkit: str, norm: str) -> None:
    clause = RESTART_CLAUSES[toolkit]
    one = notes(toolkit, "pgd", norm, restarts=1)
    assert clause not in one and "restart" not in one.lower()
    assert clause in notes(toolkit, "pgd", norm, restarts=3)
    if norm == "linf":  # its only note is about restarts: a single-run cell has nothing that differs
        assert one == ""


@pytest.mark.parametrize(
    ("toolkit", "attack", "norm", "fields", "clause"),
    [
        ("art", "apgd", "linf", {}, "nb_random_init = restarts runs, each on the samples not yet fooled."),
        ("art", "square", "linf", {}, "Restarts start again from the clean input"),
        ("torchattacks", "apgd", "linf", {}, "Restarts (n_restarts) attack only the samples not yet fooled."),
        ("torchattacks", "apgdt", "l2", {"n_target_classes": 3}, "Restarts (n_restarts) attack only the samples"),
        ("torchattacks", "square", "l2", {"max_queries": 100}, "Restarts (n_restarts) attack only the samples"),
    ],
)
def test_restart_clauses_of_attacks_that_restart_by_themselves(toolkit, attack, norm, fields, clause) -> None:
    one = notes(toolkit, attack, norm, **fields)
    assert one and clause not in one
    assert clause in notes(toolkit, attack, norm, restarts=2, **fields)


def test_autoattack_cells_carry_no_square_restart_clause_and_linf_cells_no_l2_clause() -> None:
    """ART's AutoAttack runs Square with one restart, and its L2 proposal scheme only in L2 cells."""
    linf, l2 = notes("art", "autoattack", "linf"), notes("art", "autoattack", "l2")
    for text in (linf, l2):
        assert "Square: loss=None is ART's margin" in text and "Restarts start again" not in text
        assert "Its targeted DLR is the untargeted formula" in text  # APGD-T's loss, whatever the cell's mode
    assert "L2: ART divides the new window" in l2 and "L2: ART divides" not in linf
    assert "L2: ART divides" not in notes("art", "square", "linf")
    assert "L2: ART divides" in notes("art", "square", "l2")


def test_loss_clauses_follow_the_cells_loss() -> None:
    ce, logits = notes("foolbox", "deepfool", "l2", loss="ce"), notes("foolbox", "deepfool", "l2", loss="logits")
    assert "loss 'ce' (Foolbox 'crossentropy') equals 'logits'" in ce
    assert "equals 'logits'" not in logits and "Overshoot scales the total perturbation" in logits
    margin, dlr = notes("torchattacks", "pgd", "linf", loss="margin"), notes("torchattacks", "pgd", "linf", loss="dlr")
    assert "The margin is max(z_y - max(0, max_{j!=y} z_j), 0)" in margin and "The margin is" not in dlr
    assert "PGD on the DLR or margin loss" in margin and "PGD on the DLR or margin loss" in dlr
    ce_apgd, dlr_apgd = notes("art", "apgd", "linf", loss="ce"), notes("art", "apgd", "linf", loss="dlr")
    assert "DLR" not in ce_apgd and "ART's DLR has no 1e-12 in its denominator." in dlr_apgd


def test_query_budget_clause_only_with_a_budget() -> None:
    clause = "With a query budget the attack stops when it is spent"
    for attack, norm in (("boundary", "l2"), ("hopskipjump", "linf")):
        assert clause not in notes("foolbox", attack, norm)
        assert clause in notes("foolbox", attack, norm, max_queries=500)


# ---------------------------------------------------------------------------------------------------------------
# Every row: the clauses' conditions are real (each conditional clause appears in some cell of its entry and is
# missing from another), unconditional clauses are in every cell, and default cells keep their notes.

VARIATIONS: dict[str, tuple[Any, ...]] = {
    "targeted": ("none", "random"),
    "random_start": (True, False),
    "restarts": (1, 2),
    "max_queries": (None, 500),
    "decision_rule": ("EN", "L1"),  # torchattacks picks EADEN or EADL1 by it
}


def _cells(toolkit: str, attack: str, norm: str) -> list[tuple[Any, str]]:
    """(entry, notes) for every valid combination of the variations and the row's losses."""
    adapter, info = get_adapter(toolkit), CATALOGUE[attack]
    names = [n for n in VARIATIONS if n in info.params or n in ("targeted", "max_queries")]
    losses = sorted({loss for key, entry in _entries(toolkit) if key[:2] == (attack, norm) for loss in entry.losses})
    out = []
    for values in itertools.product(*(VARIATIONS[n] for n in names), losses):
        fields = dict(zip([*names, "loss"], values, strict=True))
        try:
            spec = resolve_attack({"attack": attack, "norm": norm, "toolkit": toolkit, "eps": EPS[norm], **fields})
            out.append((adapter.entry(spec), adapter.translate(spec, n_classes=10).notes))
        except (Unsupported, SpecError):
            continue
    return out


def _entries(toolkit: str) -> list[tuple[tuple[str, str, str], Any]]:
    """The table's rows, and for torchattacks the rows it picks by loss or decision rule (its variants)."""
    adapter = get_adapter(toolkit)
    rows = [((a, n, e.native), e) for (a, n), e in adapter.table.items()]
    if toolkit == "torchattacks":
        from adapters.torchattacks_adapter import VARIANTS

        for attack, norm in VARIANTS:
            for loss_or_rule in ("dlr", "margin", "L1"):
                field = "decision_rule" if loss_or_rule == "L1" else "loss"
                raw = {"attack": attack, "norm": norm, "toolkit": toolkit, "eps": EPS[norm], field: loss_or_rule}
                try:
                    entry = adapter.entry(resolve_attack(raw))
                except SpecError:
                    continue
                if all(entry is not e for _, e in rows):
                    rows.append(((attack, norm, entry.native), entry))
    return rows


@pytest.mark.parametrize("toolkit", TOOLKITS)
def test_every_conditional_clause_is_reachable_and_discriminating(toolkit: str) -> None:
    checked = 0
    for (attack, norm, native), entry in _entries(toolkit):
        clauses = note_clauses(entry.notes)
        cells = [text for e, text in _cells(toolkit, attack, norm) if e is entry]
        assert cells, f"{toolkit} {attack}-{norm} {native}: no valid cell"
        for when, clause in clauses:
            present = [clause in text for text in cells]
            if when is None:
                assert all(present), f"{toolkit} {native}: an unconditional clause is missing from a cell: {clause}"
            else:
                assert any(present), f"{toolkit} {native}: no cell meets ({when.label}): {clause}"
                assert not all(present), f"{toolkit} {native}: every cell meets ({when.label}): {clause}"
                checked += 1
    assert checked > 0


# Rows whose every clause is conditional: their default cell (one run, no random-start clause) has no notes.
ONLY_CONDITIONAL = {("art", "pgd", "linf"), ("foolbox", "pgd", "linf"), ("torchattacks", "pgd", "linf")}


@pytest.mark.parametrize("toolkit", TOOLKITS)
def test_default_cells_keep_their_notes(toolkit: str) -> None:
    adapter = get_adapter(toolkit)
    empty = set()
    for (attack, norm), entry in adapter.table.items():
        if not entry.notes:
            continue
        fields = {"targeted": "random"} if CATALOGUE[attack].targeted_only else {}
        text = notes(toolkit, attack, norm, **fields)
        if not text:
            empty.add((toolkit, attack, norm))
            assert all(when is not None for when, _ in note_clauses(entry.notes))
        else:
            assert all(t in text for w, t in note_clauses(entry.notes) if w is None)
    assert empty == {row for row in ONLY_CONDITIONAL if row[0] == toolkit}


def test_docs_list_every_clause_with_its_condition() -> None:
    art = get_adapter("art")
    apgd = notes_markdown(art.table["apgd", "linf"].notes)
    assert "(when loss is dlr and targeted) Its targeted DLR is the untargeted formula" in apgd
    assert "(when restarts > 1) nb_random_init = restarts runs" in apgd
    assert apgd.startswith("rho and the momentum are fixed at 0.75")  # unconditional clauses unmarked
    for toolkit in TOOLKITS:
        for entry in get_adapter(toolkit).table.values():
            rendered = notes_markdown(entry.notes)
            for when, clause in note_clauses(entry.notes):
                assert (clause if when is None else f"(when {when.label}) {clause}") in rendered
    assert RESTARTS.label == "restarts > 1" and TARGETED.label == "targeted"
