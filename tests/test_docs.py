"""docs/attacks.md is what `advbridge list attacks --format markdown` generates from the adapters' tables."""

from __future__ import annotations

from pathlib import Path

from bridge.attacks.adapter import get_adapter
from bridge.attacks.spec import resolve_attack
from bridge.docs.attacks import attacks_markdown, mapping

DOC = Path(__file__).resolve().parents[1] / "docs" / "attacks.md"


def test_committed_docs_match_the_generator() -> None:
    assert DOC.read_text() == attacks_markdown(), "docs/attacks.md is stale: advbridge list attacks --format markdown"


def test_mapping_is_found_by_perturbing_the_spec() -> None:
    adapter = get_adapter("art")
    spec = resolve_attack({"attack": "pgd", "norm": "linf", "eps": 0.1, "toolkit": "art"})
    mapped, constants = mapping(adapter, adapter.table[("pgd", "linf")], spec)
    assert "`eps_step` ← step_size" in mapped and "`max_iter` ← steps" in mapped
    assert "`num_random_init` ← random_start, restarts" in mapped
    assert "`random_eps` = False" in constants and "`norm` = inf" in constants


def test_committed_defence_docs_match_the_generator() -> None:
    from bridge.docs.defences import defences_markdown

    doc = DOC.with_name("defences.md")
    assert doc.read_text() == defences_markdown(), (
        "docs/defences.md is stale: advbridge list defences --format markdown"
    )
    for kind in ("feature_squeezing", "jpeg", "spatial_smoothing", "gaussian_noise", "tvm", "thermometer",
                 "adversarial_training", "label_smoothing", "mixup", "cutmix", "gaussian_augmentation"):  # fmt: skip
        assert f"| {kind} |" in doc.read_text()
