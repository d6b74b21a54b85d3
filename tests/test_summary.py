"""Nothing aggregated silently: every cell keeps its own row in the summary, its own unique name, and each model its
own clean accuracy; an infinite distance is recorded as such."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from bridge.attacks.spec import resolve_attack
from bridge.report.summary import summary, summary_markdown
from bridge.studies.evasion.naming import cell_name, variants


def row(model: str, toolkit: str, acc: float, variant: str = "", evaluation: str = "direct", clean: float = 0.98,
        source: str = "cnn"):  # fmt: skip
    return {"model": model, "attack": "pgd", "norm": "linf", "eps": 0.1, "targeted": "none", "variant": variant,
            "evaluation": evaluation, "source": model if evaluation == "direct" else source, "toolkit": toolkit,
            "status": "ok", "robust_accuracy": acc, "clean_accuracy": clean, "median_distance": math.nan}  # fmt: skip


def test_variants_and_transfers_each_keep_their_row() -> None:
    table = pd.DataFrame([
        row("cnn", "art", 0.600, "random_start=true"), row("cnn", "foolbox", 0.610, "random_start=true"),
        row("cnn", "art", 0.575, "random_start=false"), row("cnn", "foolbox", 0.580, "random_start=false"),
        row("cnn/squeeze-exact", "art", 0.98, "random_start=true", clean=0.97),
        row("cnn/squeeze-exact", "art", 0.46, "random_start=true", "transfer", clean=0.97),
    ])  # fmt: skip
    pivot = summary(table)
    assert len(pivot) == 4  # 6 cells in 4 rows: variants and evaluations apart, toolkits side by side
    assert {"variant", "evaluation", "model"} <= set(pivot.columns)
    transfer = pivot[pivot["evaluation"] == "transfer"]
    assert transfer["art"].tolist() == ["0.460"]
    assert set(pivot["art"]) == {"0.600", "0.575", "0.980", "0.460"}
    text = summary_markdown(table)
    assert "Clean accuracy: cnn 0.980, cnn/squeeze-exact 0.970." in text
    for number in ("0.600", "0.575", "0.610", "0.580", "0.980", "0.460"):
        assert number in text


def test_transfers_from_two_models_keep_their_rows_and_name_their_source() -> None:
    table = pd.DataFrame([
        row("cnn", "art", 0.60), row("mlp", "art", 0.30), row("lenet", "art", 0.50),
        row("lenet", "art", 0.85, evaluation="transfer", source="cnn"),
        row("lenet", "art", 0.70, evaluation="transfer", source="mlp"),
    ])  # fmt: skip
    pivot = summary(table)
    assert len(pivot) == 5
    moved = pivot[pivot["evaluation"] == "transfer"]
    assert dict(zip(moved["source"], moved["art"], strict=True)) == {"cnn": "0.850", "mlp": "0.700"}
    assert set(pivot.loc[pivot["evaluation"] == "direct", "source"]) == {""}  # a direct row's source is its model


def test_two_cells_in_one_place_are_an_error_not_a_pick() -> None:
    with pytest.raises(ValueError, match="duplicate"):
        summary(pd.DataFrame([row("cnn", "art", 0.6), row("cnn", "art", 0.5)]))


def test_cell_names_are_unique_and_lead_with_the_toolkit() -> None:
    specs = [
        resolve_attack({"attack": "pgd", "norm": "linf", "eps": 0.1, "toolkit": t, "random_start": rs})
        for t in ("art", "torchattacks") for rs in (True, False)
    ] + [resolve_attack({"attack": "fgsm", "norm": "linf", "eps": 0.1, "toolkit": "art"})]  # fmt: skip
    names = [cell_name(s, v, "cnn/squeeze-exact") for s, v in zip(specs, variants(specs), strict=True)]
    assert len(set(names)) == len(names)
    assert names[2] == "torchattacks · pgd-linf eps=0.1 · random_start=true · cnn/squeeze-exact"
    assert names[4] == "art · fgsm-linf eps=0.1 · cnn/squeeze-exact"  # alone in its row: no variant


def test_an_infinite_distance_is_a_tag_not_a_huge_number(tmp_path) -> None:
    from bridge.engine.recipe import Recipe
    from bridge.engine.store import Store
    from bridge.engine.task import Task

    recipe = Recipe(name="m", base="m", model={}, defence="none", defence_name="none", data={"dataset": "digits"},
                    seed=0, device="cpu", precision="fp32", batch_size=8, model_identity="x", data_fingerprint="d",
                    train_fingerprint="t")  # fmt: skip
    store = Store(f"sqlite:///{tmp_path / 'mlflow.db'}", "views")
    parent = store.create_parent("views", {})
    task = Task("evasion", "attack", recipe, {}, "art · deepfool-l2")
    result = task.result("ok", metrics={"robust_accuracy": 0.5, "median_distance": math.inf})
    run = store.get(store.record(parent, task, result, {}, {}))
    assert run.data.metrics == {"robust_accuracy": 0.5}
    assert run.data.tags["metric.median_distance"] == "inf"
