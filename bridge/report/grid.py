"""A cell's sample grid (`samples.png`), drawn with Pillow: clean, adversarial and amplified perturbation rows.

Every evasion cell writes one, so it is on the study's critical path: drawn by matplotlib it cost about 0.15 s a
cell (a figure, its text layout and `savefig`), several times the attack itself on small models; drawn here on
pixels it costs a few milliseconds, and a cell's worker never imports matplotlib.
"""

from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

TILE = 64  # pixels a tile is scaled up to (nearest), at least: 8x8 digits become 64x64
PAD, BAND, MARGIN = 4, 12, 84  # between tiles; above each row of tiles, for its labels; left, for the row names
RED, BLACK, WHITE = (200, 0, 0), (0, 0, 0), (255, 255, 255)


def _hwc(t: torch.Tensor) -> np.ndarray:
    """NCHW -> NHWC with 3 channels (grayscale repeated)."""
    a = t.detach().cpu().float().numpy().transpose(0, 2, 3, 1)
    return np.repeat(a, 3, axis=3) if a.shape[3] == 1 else a


def sample_grid(x: torch.Tensor, x_adv: torch.Tensor, y: torch.Tensor, clean_pred: torch.Tensor,
                adv_pred: torch.Tensor, bounds: tuple[float, float], n: int = 8) -> bytes:  # fmt: skip
    """The first `n` samples as PNG bytes. Rows: clean (its label y and prediction p), adversarial (p, red when
    fooled), the perturbation amplified to the full range (by the factor shown; `none` where nothing changed)."""
    n = min(n, len(x))
    lo, hi = bounds
    delta = _hwc(x_adv[:n] - x[:n])
    scale = np.abs(delta).reshape(n, -1).max(1).clip(min=1e-12)[:, None, None, None]
    rows = [(_hwc(x[:n]) - lo) / (hi - lo), (_hwc(x_adv[:n]) - lo) / (hi - lo), 0.5 + 0.5 * delta / scale]
    h, w = rows[0].shape[1:3]
    zoom = max(1, TILE // max(h, w))
    th, tw = h * zoom, w * zoom
    top = BAND + 2  # the title's band
    image = Image.new("RGB", (MARGIN + n * (tw + PAD) + PAD, top + 3 * (BAND + th + PAD) + PAD), WHITE)
    draw, font = ImageDraw.Draw(image), ImageFont.load_default()
    draw.text((PAD, 1), "p = prediction; perturbation amplified to the full range", fill=BLACK, font=font)
    names = ("clean", "adversarial", "perturbation")
    for i, (name, row) in enumerate(zip(names, rows, strict=True)):
        y0 = top + i * (BAND + th + PAD) + BAND
        draw.text((PAD, y0 + th // 2 - 6), name, fill=BLACK, font=font)
        tiles = (row.clip(0, 1) * 255).round().astype(np.uint8)
        for j in range(n):
            x0 = MARGIN + PAD + j * (tw + PAD)
            image.paste(Image.fromarray(tiles[j]).resize((tw, th), Image.Resampling.NEAREST), (x0, y0))
            if i == 0:
                label, colour = f"y={int(y[j])} p={int(clean_pred[j])}", BLACK
            elif i == 1:
                fooled = int(adv_pred[j]) != int(y[j])
                label, colour = f"p={int(adv_pred[j])}", RED if fooled else BLACK
            else:
                amp = 0.5 / float(scale[j, 0, 0, 0])
                label, colour = (f"x{amp:.0f}" if amp < 1e11 else "none"), BLACK
            draw.text((x0, y0 - BAND), label, fill=colour, font=font)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()
