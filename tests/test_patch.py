"""The patch study's pure parts: the masks and where the bridge pastes a patch, success by hand, the section's
refusals and the checks on constructed numbers (each tripped and passed)."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch

from bridge.core.errors import ScenarioError
from bridge.scenario.load import load_raw
from bridge.studies.patch.checks import run_checks
from bridge.studies.patch.geometry import SHAPES, apply, draw, footprint, mask
from bridge.studies.patch.metrics import success


def scenario(**patch) -> dict:
    return {"name": "patch-quick", "data": {"dataset": "digits", "split": "test"},
            "patch": {"scales": [0.1, 0.3], "target": 0} | patch}  # fmt: skip


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("area", [0.05, 0.2, 0.4])
def test_footprint_covers_the_scale(shape: str, area: float) -> None:
    placements = draw(torch.full((20,), area), 30.0, shape, (64, 64), torch.Generator().manual_seed(0))
    covered = footprint(placements, shape, (64, 64), 64).mean((1, 2, 3))
    assert covered.sub(area).abs().max() < 0.01  # within rounding to whole pixels (41 pixels in 4096)
    assert mask("circle", 64).mean() == pytest.approx(math.pi / 4, abs=0.01) and mask("square", 8).all()


def test_apply_places_the_patch_where_asked() -> None:
    x = torch.zeros(2, 3, 32, 32)
    patch = torch.ones(3, 32, 32)
    placements = torch.tensor([[0.0625, 0.0, 12.0, 20.0], [0.0625, 0.0, 16.0, 16.0]])  # 8x8 pixels, no rotation
    out = apply(x, patch, "square", placements)
    expected = torch.zeros(2, 3, 32, 32)
    expected[0, :, 16:24, 8:16] = 1  # centre x=12, y=20: columns 8..15, rows 16..23
    expected[1, :, 12:20, 12:20] = 1
    assert torch.equal(out, expected)
    turned = apply(x[:1], patch, "square", torch.tensor([[0.0625, 45.0, 16.0, 16.0]]))
    assert turned.sum() / 3 == pytest.approx(64, abs=6) and turned[0, 0, 16, 16] == 1  # a diamond, same area
    drawn = draw(torch.full((200,), 0.3), 45.0, "square", (32, 32), torch.Generator().manual_seed(1))
    pixels = footprint(drawn, "square", (32, 32), 32).sum((1, 2, 3))
    side = math.sqrt(0.3 * 1024)  # 17.5 pixels: whole rows and columns round it by up to 2 * side + 1 pixels
    assert pixels.sub(side**2).abs().max() <= 2 * side + 1  # a drawn patch is never cut by the border


def test_success_by_hand() -> None:
    y = torch.tensor([0, 1, 2, 3, 1])
    clean = torch.tensor([0, 1, 2, 0, 1])  # sample 3 misclassified
    pred = torch.tensor([0, 0, 2, 1, 3])
    assert success(y, clean, pred, 0) == (0.25, 4)  # not of class 0: samples 1..4; sample 1 turned into 0
    assert success(y, clean, pred, None) == (0.5, 4)  # correct: 0, 1, 2, 4; samples 1 and 4 made wrong
    rate, trials = success(y[:1], clean[:1], pred[:1], 0)  # the only image is of the target class: nothing to judge
    assert math.isnan(rate) and trials == 0


REFUSED = [
    ({"scales": [0.1]}, "at least 2 items"),
    ({"scales": [0.1, 0.1]}, "scales must be distinct"),
    ({"scales": [0.1, 1.0]}, "less than 1"),
    ({"split": "test"}, "cannot be trained on data.split"),
    ({"toolkits": ["art", "art"]}, "each toolkit once"),
    ({"shape": "triangle"}, "shape"),
    ({"target": 10}, "class 10, but the data has 10 classes"),
    ({"scales": [0.1, 0.8]}, "a circle covers at most 0.785"),
]


@pytest.mark.parametrize(("section", "message"), REFUSED)
def test_section_refusals(section: dict, message: str) -> None:
    with pytest.raises(ScenarioError, match=message) as caught:
        load_raw(scenario(**section))
    assert "\n" not in str(caught.value)


def _rows(success: list[float], control: list[float], evaluation: str = "direct") -> pd.DataFrame:
    scales = [0.1, 0.2, 0.4][: len(success)]
    return pd.DataFrame({"source": "m", "toolkit": "bridge", "model": "m", "evaluation": evaluation,
                         "scale": scales, "success": success, "control_success": control, "n_trials": 100.0,
                         "status": "ok"})  # fmt: skip


def test_checks_trip_and_pass() -> None:
    good = run_checks(_rows([0.05, 0.3, 0.7], [0.0, 0.05, 0.2])).set_index("name")["status"]
    assert good.to_dict() == {"patch_success_grows_with_scale": "passed", "patch_beats_noise": "passed"}
    flat = run_checks(_rows([0.30, 0.2, 0.305], [0.0, 0.1, 0.4])).set_index("name")
    assert (flat["status"] == "failed").all()  # 0.305 is not above 0.30 beyond one trial (0.01); below the noise
    assert flat.loc["patch_success_grows_with_scale", "cells"].startswith("bridge (0.300 at 0.1, 0.305 at 0.4)")
    transfer = run_checks(_rows([0.3, 0.2, 0.1], [0.5, 0.5, 0.5], "transfer")).set_index("name")["status"]
    assert (transfer == "skipped").all()  # only a patch on its own model must show its effect


def test_art_class_chosen_and_refusals_said() -> None:
    from adapters.art_patch import NUMPY, TORCH, native

    name, why, unsupported = native("circle", True)
    assert name in (NUMPY, TORCH) and why and unsupported is None
    if name == NUMPY:  # torchvision does not import here: the numpy class's limits are said, not hidden
        assert "circular patches only" in native("square", True)[2]
        assert "targeted patches only" in native("circle", False)[2]
