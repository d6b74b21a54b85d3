"""The cell's sample grid: the tiles hold the inputs' own pixels, the perturbation row is mid-grey where nothing
changed, and a fooled sample's prediction is the only red on the page."""

from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image

from bridge.report import grid


def _decode(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


def _red(page: np.ndarray) -> np.ndarray:
    """Where the page is red (text is anti-aliased: reddish, not exactly RED)."""
    r, g, b = (page[..., i].astype(int) for i in range(3))
    return (r - g > 80) & (r - b > 80)


def _tile(page: np.ndarray, row: int, column: int, side: int) -> np.ndarray:
    top = grid.BAND + 2 + row * (grid.BAND + side + grid.PAD) + grid.BAND
    left = grid.MARGIN + grid.PAD + column * (side + grid.PAD)
    return page[top : top + side, left : left + side]


def test_tiles_hold_the_pixels_and_only_a_fooled_prediction_is_red() -> None:
    x = torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    x_adv = x.clone()
    x_adv[1, 0, 2, 5] += 0.1  # sample 1 changed in one pixel
    y = torch.tensor([4, 5, 6])
    page = _decode(grid.sample_grid(x, x_adv, y, y, torch.tensor([4, 5, 6]), (0.0, 1.0)))
    side = grid.TILE  # 8x8 inputs scaled up 8 times
    assert page.shape == (grid.BAND + 2 + 3 * (grid.BAND + side + grid.PAD) + grid.PAD,
                          grid.MARGIN + 3 * (side + grid.PAD) + grid.PAD, 3)  # fmt: skip
    clean = _tile(page, 0, 2, side)[::8, ::8, 0]
    np.testing.assert_array_equal(clean, (x[2, 0].numpy() * 255).round())
    assert (_tile(page, 2, 0, side) == 128).all()  # nothing changed: mid-grey
    perturbation = _tile(page, 2, 1, side)[::8, ::8, 0]
    assert perturbation[2, 5] == 255 and (np.delete(perturbation.ravel(), 2 * 8 + 5) == 128).all()
    assert not _red(page).any()  # nothing fooled
    fooled = _decode(grid.sample_grid(x, x_adv, y, y, torch.tensor([4, 0, 6]), (0.0, 1.0)))
    red = np.argwhere(_red(fooled))
    assert len(red) and (red[:, 1] >= grid.MARGIN + grid.PAD + side + grid.PAD).all()  # in sample 1's column
    assert (red[:, 1] < grid.MARGIN + grid.PAD + 2 * (side + grid.PAD)).all()
