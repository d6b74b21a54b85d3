"""The extraction study's quick tests: its scenario section's refusals, the native calls, the plan, the metrics and
checks computed by hand on constructed numbers (the real study on digits is tests/test_extraction_study.py)."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch

from bridge.core.errors import ScenarioError
from bridge.data.dataset import Dataset
from bridge.engine.recipe import Recipe
from bridge.scenario.load import load_raw
from bridge.studies.extraction import plan as planning
from bridge.studies.extraction.checks import BASELINE, run_checks
from bridge.studies.extraction.data import transform
from bridge.studies.extraction.metrics import agreement, scores, tolerance
from bridge.studies.extraction.run import _first_queries


def scenario(**extraction) -> dict:
    section = {"thief": {"arch": "small_cnn", "training": {"epochs": 2, "batch_size": 16}},
               "queries": {"dataset": "digits", "split": "train"}, "budgets": [100, 50],
               "attacks": [{"attack": "copycat"}]} | extraction  # fmt: skip
    return {"name": "extraction-quick", "data": {"dataset": "digits", "split": "test"}, "extraction": section}


REFUSED = [
    ({"attacks": [{"attack": "copycat", "sampling": "random"}]}, "sampling and reward apply to knockoff only"),
    ({"attacks": [{"attack": "knockoff", "reward": "cert"}]}, "reward applies to knockoff with sampling adaptive"),
    ({"attacks": [{"attack": "knockoff", "sampling": "adaptive", "use_probability": True}]}, "labels only"),
    ({"attacks": [{"attack": "copycat"}, {"attack": "copycat"}]}, "each attack once"),
    ({"budgets": [50, 50]}, "budgets must be distinct"),
    ({"budgets": [0]}, "greater than 0"),
    ({"thief": {"arch": "small_cnn", "training": {"schedule": "cosine"}}}, "schedule cannot be followed by ART's fit"),
    ({"thief": {"arch": "small_cnn", "checkpoint": "w.pt"}}, "a PyTorch zoo architecture"),
    ({"queries": {"dataset": "digits", "bounds": [0, 255]}}, "differ from data.bounds"),
    ({"ood": {"dataset": "digits", "split": "test"}}, "give another dataset or a transform"),
    ({"ood": {"dataset": "digits", "transform": "blur"}}, "transform"),
]


@pytest.mark.parametrize(("section", "message"), REFUSED)
def test_section_refusals(section: dict, message: str) -> None:
    with pytest.raises(ScenarioError, match=message):
        load_raw(scenario(**section))


def test_data_split_must_be_held_out() -> None:
    raw = scenario() | {"data": {"dataset": "digits", "split": "train"}}
    with pytest.raises(ScenarioError, match="data.split must be test"):
        load_raw(raw)


def test_native_calls_are_explicit_and_planned() -> None:
    attacks = [{"attack": "copycat"}, {"attack": "knockoff", "use_probability": True},
               {"attack": "knockoff", "sampling": "adaptive"}]  # fmt: skip
    plan = load_raw(scenario(attacks=attacks, query_batch_size=32))
    calls = plan.studies["extraction"]
    assert sorted(calls) == sorted((a, b) for a in ("copycat", "knockoff-random-prob", "knockoff-adaptive-all")
                                   for b in (50, 100))  # fmt: skip
    assert calls["copycat", 50] == {
        "native_class": "CopycatCNN",
        "kwargs": {
            "batch_size_fit": 16,
            "batch_size_query": 32,
            "nb_epochs": 2,
            "nb_stolen": 50,
            "use_probability": False,
        },
    }
    adaptive = calls["knockoff-adaptive-all", 100]["kwargs"]
    assert (adaptive["sampling_strategy"], adaptive["reward"], adaptive["verbose"], adaptive["nb_stolen"]) == (
        "adaptive", "all", False, 100)  # fmt: skip
    recipe = Recipe("victim", "victim", {}, "none", "none", {"dataset": "digits"}, 0, "cpu", "fp32", 128, "m", "d", "t")
    tasks, meta = planning.tasks(plan.scenario, calls, [recipe])
    assert [t.kind for t in tasks].count("baseline") == 2 and [t.kind for t in tasks].count("extract") == 6
    assert all(t.keep and t.toolkits == ("art",) for t in tasks if t.kind == "extract")
    assert meta["budgets"] == [50, 100] and meta["ood"] is None


def test_agreement_and_scores_by_hand() -> None:
    y = torch.tensor([0, 1, 2, 3, 4])
    victim = torch.tensor([0, 1, 2, 3, 0])  # 4/5 correct
    thief = torch.tensor([0, 1, 0, 3, 0])  # agrees with the victim on 4/5, with the truth on 3/5
    assert scores(y, victim, thief) == pytest.approx({"test_accuracy": 0.6, "fidelity": 0.8, "victim_accuracy": 0.8})
    assert math.isnan(agreement(torch.tensor([]), torch.tensor([])))
    with pytest.raises(ValueError, match="different shapes"):
        agreement(y, y[:3])
    assert tolerance(0.9, 100) == pytest.approx(2 * 0.03 + 0.01)
    assert tolerance(1.0, 400) == pytest.approx(1 / 400)


def test_transforms() -> None:
    x = torch.arange(2 * 1 * 8 * 8, dtype=torch.float32).reshape(2, 1, 8, 8) / 128
    data = Dataset("digits", x, torch.tensor([3, 7]), 10, (0.0, 1.0))
    inverted = transform(data, "invert")
    assert torch.equal(inverted.x, 1 - x) and torch.equal(inverted.y, data.y) and inverted.name == "digits[invert]"
    shuffled = transform(data, "shuffle_pixels")
    assert not torch.equal(shuffled.x, x)
    for i in range(2):  # one permutation of the same pixels, the same for every image
        assert torch.equal(shuffled.x[i].flatten().sort().values, x[i].flatten().sort().values)
    assert torch.equal(shuffled.x[1] - shuffled.x[0], x[1] - x[0])
    assert torch.equal(transform(data, "shuffle_pixels").x, shuffled.x)


def _rows(fidelities: dict[str, float], budget: int = 150, queries: int | None = None) -> list[dict]:
    return [{"model": "m", "attack": a, "budget": budget, "status": "ok", "fidelity": f, "n_samples": 400,
             "queries": 0 if a == BASELINE else (budget if queries is None else queries)}
            for a, f in fidelities.items()]  # fmt: skip


def test_check_on_constructed_numbers() -> None:
    # baseline 0.90 over 400 samples: tolerance 2 * 0.015 + 0.0025 = 0.0325; the smaller budget is not judged
    table = pd.DataFrame(_rows({BASELINE: 0.90, "copycat": 0.88, "knockoff-random": 0.50})
                         + _rows({BASELINE: 0.80, "copycat": 0.10}, budget=50))  # fmt: skip
    checks = run_checks(table).set_index("name")
    below = checks.loc["extraction_not_below_true_labels"]
    assert below["status"] == "failed" and below["cells"] == "knockoff-random (0.500 < 0.900)"
    assert "tolerance 0.033" in below["detail"] and below["model"] == "m"
    assert checks.loc["queries_match_budget", "status"] == "passed"
    fine = run_checks(pd.DataFrame(_rows({BASELINE: 0.90, "copycat": 0.868}))).set_index("name")
    assert fine.loc["extraction_not_below_true_labels", "status"] == "passed"
    alone = run_checks(pd.DataFrame(_rows({"copycat": 0.9}, queries=151))).set_index("name")
    assert alone.loc["extraction_not_below_true_labels", "status"] == "skipped"
    assert alone.loc["queries_match_budget", "cells"] == "copycat budget 150 (151 queries)"


def test_beside_the_evasion_grid_and_budget_past_the_pool() -> None:
    raw = scenario() | {"attacks": [{"attack": "fgsm", "norm": "linf", "eps": 0.1, "toolkit": "art"}]}
    plan = load_raw(raw)
    assert [k.name for k in plan.scenario.kinds] == ["evasion", "extraction"] and set(plan.studies) >= {
        "evasion", "extraction"}  # fmt: skip
    pool = Dataset("digits", torch.zeros(4, 1, 8, 8), torch.arange(4), 10)
    assert len(_first_queries(pool, 3, 0)) == 3
    with pytest.raises(ValueError, match="budgets: 5 queries, but the query pool has 4 samples"):
        _first_queries(pool, 5, 0)


GRID = [{"attack": "fgsm", "norm": "linf", "eps": 0.1, "toolkit": "art"}]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"transfer_from": "knockoff-random"}, "no extraction attack knockoff-random \\(attacks: copycat\\)"),
        ({"transfer_from": "copycat@75"}, "the budget after @ is one of extraction.budgets \\(50, 100\\)"),
        ({"transfer_from": ["copycat", "copycat"]}, "each stolen model once"),
        ({"attacks": None, "transfer_from": "copycat"}, "transfer_from applies to the evasion study, which needs"),
    ],
)
def test_transfer_from_refusals(extra: dict, message: str) -> None:
    raw = {k: v for k, v in (scenario() | {"attacks": GRID} | extra).items() if v is not None}
    with pytest.raises(ScenarioError, match=message):
        load_raw(raw)


def test_transfer_from_needs_an_extraction_section() -> None:
    raw = {"name": "x", "data": {"dataset": "digits"}, "attacks": GRID, "transfer_from": "copycat"}
    with pytest.raises(ScenarioError, match="a model stolen by the extraction study: add an extraction section"):
        load_raw(raw)


def test_a_surrogate_cell_takes_the_thief_the_extraction_plans() -> None:
    """Each cell on each victim, crafted on the thief of the named budget: its input is that extract task's key."""
    plan = load_raw(scenario() | {"attacks": GRID, "transfer_from": ["copycat", "copycat@50"]})
    recipe = Recipe("small_cnn", "small_cnn", {"arch": "small_cnn"}, "none", "none", {"dataset": "digits"}, 0, "cpu",
                    "fp32", 16, "weights", "evaluated", "trained")  # fmt: skip
    from bridge.studies.registry import KINDS

    scn = plan.scenario
    stolen, _ = KINDS["extraction"].tasks(scn, plan.studies["extraction"], [recipe], 10)
    cells, _ = KINDS["evasion"].tasks(scn, plan.studies["evasion"], [recipe], 10)
    by = {(t.params["label"], t.params["budget"]): t.key for t in stolen if t.kind == "extract"}
    surrogates = {t.params["from"]: t for t in cells if t.kind == "surrogate"}
    assert set(surrogates) == {"thief:copycat", "thief:copycat@50"}
    assert surrogates["thief:copycat"].depends == (by["copycat", 100],)
    assert surrogates["thief:copycat@50"].depends == (by["copycat", 50],)
    (made,) = [t for t in cells if t.kind == "attack"]
    assert all(s.params["spec"] == made.params["spec"] and s.payload is made.payload for s in surrogates.values())
