"""The poisoning study's quick tests: where every trigger lands on NCHW batches, the section's refusals, the metrics
and checks computed by hand on constructed numbers (the real study on digits is tests/test_poisoning_study.py)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from adapters.art_poisoning import dirty_label
from bridge.core.errors import ScenarioError
from bridge.scenario.load import load_raw
from bridge.studies.poisoning import strip, triggers
from bridge.studies.poisoning.checks import run_checks
from bridge.studies.poisoning.metrics import anomaly, detection_rates, success_rate

PIXEL = {"trigger": "pixel", "distance": 2, "value": None, "image": None, "size": 3, "blend": 1.0}
PATTERN = PIXEL | {"trigger": "pattern"}


def changed(x: torch.Tensor, out: torch.Tensor) -> set[tuple[int, int, int, int]]:
    return {tuple(i) for i in torch.nonzero(out != x).tolist()}


@pytest.mark.parametrize("channels", [1, 3])
def test_pixel_and_pattern_land_in_every_channel(channels: int) -> None:
    x = torch.zeros(2, channels, 8, 6)
    pixel = changed(x, triggers.apply(x, PIXEL, (0.0, 1.0)))
    assert pixel == {(n, c, 6, 4) for n in range(2) for c in range(channels)}  # row H-2, column W-2
    pattern = changed(x, triggers.apply(x, PATTERN, (0.0, 1.0)))
    cells = {(6, 4), (5, 3), (6, 2), (4, 4)}  # ART's checker: (H-d, W-d), (H-d-1, W-d-1), (H-d, W-d-2), (H-d-2, W-d)
    assert pattern == {(n, c, i, j) for n in range(2) for c in range(channels) for i, j in cells}
    assert (triggers.apply(x, PATTERN, (0.0, 1.0))[:, :, 6, 4] == 1.0).all()
    assert (triggers.apply(x, PIXEL | {"value": 0.5}, (-1.0, 1.0))[:, :, 6, 4] == 0.5).all()


@pytest.mark.parametrize("channels", [1, 3])
def test_art_backdoor_places_the_bridges_trigger(channels: int) -> None:
    """Through ART's PoisoningAttackBackdoor (NumPy in, NumPy out): the same pixels, and the target's labels."""
    x = np.zeros((3, channels, 8, 8), dtype=np.float32)
    fn = lambda a: triggers.apply_numpy(a, PATTERN, (0.0, 1.0))  # noqa: E731
    poisoned, y = dirty_label(x, 7, 10, fn)
    assert changed(torch.from_numpy(x), torch.from_numpy(poisoned)) == changed(
        torch.from_numpy(x), triggers.apply(torch.from_numpy(x), PATTERN, (0.0, 1.0))
    )
    assert int((poisoned != x).sum()) == 3 * channels * 4 and y.tolist() == [7, 7, 7]


def test_image_trigger_is_blended_in_its_square(tmp_path) -> None:
    path = tmp_path / "t.png"
    Image.fromarray(np.full((4, 4), 255, dtype=np.uint8)).save(path)
    x = torch.zeros(1, 3, 8, 8)
    out = triggers.apply(x, PIXEL | {"trigger": "image", "image": str(path), "size": 2, "blend": 0.5}, (0.0, 1.0))
    assert changed(x, out) == {(0, c, i, j) for c in range(3) for i in (5, 6) for j in (5, 6)}
    assert torch.allclose(out[0, :, 5:7, 5:7], torch.full((3, 2, 2), 0.5))
    with pytest.raises(ValueError, match="does not fit"):
        triggers.positions("image", 8, 8, 2, 8)
    with pytest.raises(ValueError, match="1- or 3-channel"):
        triggers.read_image(path, 4, 2, (0.0, 1.0))


def test_success_rate_and_detection_rates_by_hand() -> None:
    y = np.array([0, 1, 2, 3, 0])
    pred = np.array([0, 0, 2, 0, 1])
    assert success_rate(pred, y, 0) == (2 / 3, 3)  # of classes 1, 2, 3: two predicted 0; class-0 inputs ignored
    assert math.isnan(success_rate(pred[:1], y[:1], 0)[0])
    poisoned = np.array([True, True, False, False, False, False])
    flagged = np.array([True, False, True, False, False, False])
    rates = detection_rates(flagged, poisoned)
    assert (rates["tpr"], rates["fpr"], rates["n_flagged"]) == (0.5, 0.25, 2.0)


def test_anomaly_index_flags_only_an_abnormally_small_mask() -> None:
    """Neural Cleanse's rule on constructed L1 norms: median 20, MAD 1 (x 1.4826)."""
    norms = np.array([10.0, 20, 21, 19, 20, 22, 18, 20, 21, 19])
    index, flagged = anomaly(norms)
    assert index[0] == pytest.approx(10 / 1.4826) and index[1] == 0.0 and index[5] == pytest.approx(2 / 1.4826)
    assert flagged.tolist() == [True] + [False] * 9
    large = norms.copy()
    large[0] = 30.0  # as far from the median, but a larger trigger than the others': not a backdoor
    assert anomaly(large)[0][0] == pytest.approx(10 / 1.4826) and not anomaly(large)[1].any()
    index, flagged = anomaly(np.full(10, 46.0))  # every mask the same (ART's searches that never moved)
    assert (index == 0).all() and not flagged.any()


def test_plan_neural_cleanse_and_gradient_matching_per_framework() -> None:
    """Neural Cleanse is a task on a Keras model and a row saying why not on a PyTorch one; gradient matching is a
    row saying why not on a Keras model."""
    from bridge.engine.recipe import Recipe
    from bridge.studies.registry import KINDS

    section = {"attacks": [{"attack": "backdoor"}, {"attack": "gradient_matching"}], "fractions": [0.05],
               "defences": [{"defence": "neural_cleanse"}]}  # fmt: skip
    plan = load_raw(scenario(**section))
    recipes = [Recipe(f"small_cnn-{fw}", "small_cnn", {"arch": "small_cnn", "framework": fw}, "none", "none",
                      {"dataset": "digits"}, 0, "cpu", "fp32", 16, "weights", "evaluated", "trained")
               for fw in ("torch", "keras")]  # fmt: skip
    tasks, meta = KINDS["poisoning"].tasks(plan.scenario, plan.studies["poisoning"], recipes, 10)
    kinds = {(t.recipe.name, t.params["label"], t.kind) for t in tasks}
    assert ("small_cnn-keras", "backdoor-pixel", "cleanse") in kinds
    assert not any(kind == "cleanse" and name == "small_cnn-torch" for name, _, kind in kinds)
    assert not any(name == "small_cnn-keras" and label.startswith("gradient") for name, label, _ in kinds)
    fixed = {(r["row"]["model"], r["row"]["attack"]): r["row"]["status"] for r in meta["rows"] if "row" in r}
    assert fixed == {
        ("small_cnn-torch", "backdoor-pixel"): "unsupported: the model is PyTorch: ART implements NeuralCleanse "
        "(KerasNeuralCleanse) for Keras models only",
        ("small_cnn-torch", "gradient_matching-random"): "unsupported: the model is PyTorch: ART implements "
        "NeuralCleanse (KerasNeuralCleanse) for Keras models only",
        ("small_cnn-keras", "gradient_matching-random"): "unsupported: the model is Keras: ART implements "
        "GradientMatchingAttack for PyTorch models only",
    }


def scenario(**section) -> dict:
    poisoning = {"attacks": [{"attack": "backdoor"}], "fractions": [0.1]} | section
    return {"name": "poisoning-quick", "data": {"dataset": "digits", "split": "test"}, "model": {"arch": "small_cnn"},
            "poisoning": poisoning}  # fmt: skip


REFUSED = [
    ({"fractions": [0.0]}, "in \\(0, 1\\)"),
    ({"fractions": [0.1, 0.1]}, "distinct"),
    ({"targets": [10]}, "not a class of digits"),
    ({"attacks": [{"attack": "backdoor"}, {"attack": "backdoor"}]}, "each once"),
    ({"attacks": [{"attack": "backdoor", "trigger": "image"}]}, "image \\(a file\\)"),
    ({"attacks": [{"attack": "backdoor", "size": 4}]}, "trigger: image only"),
    ({"defences": [{"defence": "strip"}, {"defence": "strip"}]}, "each once"),
    ({"defences": [{"defence": "spectral", "expected_pp_poison": 1.5}]}, "less than 1"),
    ({"defences": [{"defence": "neural_cleanse", "n_validation": 16}]}, "at least batch_size"),
]


@pytest.mark.parametrize(("section", "message"), REFUSED)
def test_section_refusals(section: dict, message: str) -> None:
    with pytest.raises(ScenarioError, match=message):
        load_raw(scenario(**section))


def test_training_split_refused_as_evaluation_data() -> None:
    with pytest.raises(ScenarioError, match="data.split must be test"):
        load_raw(scenario() | {"data": {"dataset": "digits", "split": "train"}})


def rows(asr: list[float], drop: list[float], base: float = 0.1) -> pd.DataFrame:
    """Train rows of one attack at fractions 0.05 and 0.1."""
    return pd.DataFrame({"model": "m", "attack": "backdoor-pixel", "task": "train", "status": "ok", "target": 0,
                         "fraction": [0.05, 0.1], "retraining": 0, "asr": asr, "base_rate": base,
                         "accuracy_drop": drop})  # fmt: skip


def test_checks_trip_on_unlearned_and_noticeable_poisons() -> None:
    bad = run_checks(rows([0.9, 0.15], [0.01, 0.2]), tolerance=0.1, max_drop=0.05).set_index("name")
    assert bad.loc["backdoor_learned", "status"] == "failed"  # the largest fraction's ASR is within 0.1 of the base
    assert bad.loc["backdoor_learned", "cells"].startswith("backdoor-pixel t=0 f=0.1 (ASR 0.150")
    assert bad.loc["poisoning_stealthy", "status"] == "failed"
    assert bad.loc["poisoning_stealthy", "cells"] == "backdoor-pixel t=0 f=0.1 r=0 (drop 0.200)"
    good = run_checks(rows([0.15, 0.95], [0.01, 0.03]), tolerance=0.1, max_drop=0.05)
    assert (good["status"] == "passed").all()
    none = run_checks(rows([0.9, 0.9], [0, 0]).assign(status="failed: x"), tolerance=0.1, max_drop=0.05)
    assert (none["status"] == "skipped").all()


class Backdoored(torch.nn.Module):
    """A linear model on 1x8x8 inputs in [0, 0.3] with spread-out probabilities, plus (when `backdoor`) a large logit
    for class 0 wherever pixel (6, 6) is above 0.4: a 1.0 trigger keeps it there through any 50/50 blend."""

    def __init__(self, backdoor: bool) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(64, 10)
        torch.nn.init.normal_(self.linear.weight, std=0.5, generator=torch.Generator().manual_seed(0))
        self.backdoor = backdoor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.linear(x.flatten(1))
        if self.backdoor:
            logits[:, 0] += 30.0 * (x[:, 0, 6, 6] > 0.4)
        return logits


@pytest.mark.parametrize("backdoor", [True, False])
def test_strip_flags_the_triggered_inputs_of_a_backdoored_model_only(backdoor: bool) -> None:
    x = 0.3 * torch.rand(500, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    clean, validation = x[:200], x[200:]
    triggered = triggers.apply(clean, PIXEL | {"value": 1.0}, (0.0, 1.0))
    net = Backdoored(backdoor).eval()
    on_triggered = strip.flags(net, triggered, validation, 20, 0.05, seed=0)
    on_clean = strip.flags(net, clean, validation, 20, 0.05, seed=0)
    assert on_clean.mean() <= 0.1  # the false acceptance rate asked, 0.05, up to the sampling of 300 clean scores
    if not backdoor:
        assert on_triggered.mean() <= 0.1
        return
    assert on_triggered.mean() == 1.0
