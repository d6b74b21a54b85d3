"""Where a patch lands: its mask (square or circle), random placements (scale, rotation, location), and the one
function that pastes a patch into images, used for training the bridge's patch and for evaluating every patch.

A patch is an image-sized tensor (C, P, P), P the images' smaller edge (ART's parametrisation too). A placement is
one row (area, angle, cx, cy): `area` the fraction of the image the patch's shape covers, `angle` in degrees,
the centre in pixels. The patch's content is resampled bilinearly (differentiable in the patch); its mask by
nearest neighbour, so the footprint is whole pixels and its area is the scale's within rounding.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

SHAPES = ("square", "circle")
FILL = {"square": 1.0, "circle": math.pi / 4}  # the share of the patch's square its shape covers


def mask(shape: str, size: int) -> torch.Tensor:
    """The shape on the patch's (size, size) plane: 1 inside, 0 outside (a circle: pixel centres within the
    inscribed disk)."""
    if shape == "square":
        return torch.ones(size, size)
    centres = torch.arange(size, dtype=torch.float32) + 0.5 - size / 2
    return ((centres[:, None] ** 2 + centres[None, :] ** 2) <= (size / 2) ** 2).float()


def side(area: torch.Tensor | float, shape: str, image: tuple[int, int]) -> torch.Tensor | float:
    """The patch's side as a fraction of the image's smaller edge, for its shape to cover `area` of the image."""
    h, w = image
    return (area * h * w / FILL[shape]) ** 0.5 / min(h, w)


def max_area(shape: str, image: tuple[int, int]) -> float:
    """The largest area a patch of `shape` can cover when its side is the image's smaller edge."""
    h, w = image
    return FILL[shape] * min(h, w) ** 2 / (h * w)


def draw(
    areas: torch.Tensor, rotation: float, shape: str, image: tuple[int, int], generator: torch.Generator
) -> torch.Tensor:
    """Placements (N, 4) for the given areas: an angle uniform in [-rotation, rotation] degrees and a centre uniform
    over the positions that keep the (rotated) patch inside the image (the image's centre when none does)."""
    n = len(areas)
    h, w = image
    angle = (torch.rand(n, generator=generator) * 2 - 1) * rotation
    half = side(areas, shape, image) * min(h, w) / 2
    if shape == "square":
        rad = torch.deg2rad(angle)
        half = half * (rad.cos().abs() + rad.sin().abs())
    u, v = torch.rand(n, generator=generator), torch.rand(n, generator=generator)
    cx = torch.where(half < w / 2, half + u * (w - 2 * half).clamp(min=0), torch.full_like(half, w / 2))
    cy = torch.where(half < h / 2, half + v * (h - 2 * half).clamp(min=0), torch.full_like(half, h / 2))
    return torch.stack([areas.float(), angle, cx, cy], 1)


def _grid(placements: torch.Tensor, shape: str, image: tuple[int, int]) -> torch.Tensor:
    """The sampling grid mapping each image pixel to the patch plane (normalised, align_corners=False)."""
    h, w = image
    area, angle, cx, cy = placements.unbind(1)
    half = side(area, shape, image) * min(h, w) / 2  # pixels
    rad = torch.deg2rad(angle)
    cos, sin = rad.cos(), rad.sin()
    # pixel offset from the centre: d = (x_n + 1) w / 2 - cx, e = (y_n + 1) h / 2 - cy; rotated back by -angle
    ox, oy = w / 2 - cx, h / 2 - cy
    theta = torch.stack([
        torch.stack([cos * w / 2, sin * h / 2, cos * ox + sin * oy], 1),
        torch.stack([-sin * w / 2, cos * h / 2, -sin * ox + cos * oy], 1),
    ], 1) / half[:, None, None]  # fmt: skip
    return F.affine_grid(theta, [len(placements), 1, h, w], align_corners=False)


def _covered(grid: torch.Tensor, shape: str, size: int) -> torch.Tensor:
    plane = mask(shape, size).to(grid)[None, None].expand(len(grid), 1, size, size)
    return F.grid_sample(plane, grid, mode="nearest", padding_mode="zeros", align_corners=False)


def footprint(placements: torch.Tensor, shape: str, image: tuple[int, int], size: int) -> torch.Tensor:
    """(N, 1, H, W): where each placement's shape covers the image."""
    return _covered(_grid(placements.float(), shape, image), shape, size)


def apply(x: torch.Tensor, patch: torch.Tensor, shape: str, placements: torch.Tensor) -> torch.Tensor:
    """`x` (N, C, H, W) with `patch` (C, P, P) pasted at each row of `placements` (on x's device)."""
    n, _, h, w = x.shape
    size = patch.shape[-1]
    placements = placements.to(x.device, torch.float32)
    grid = _grid(placements, shape, (h, w))
    content = F.grid_sample(patch.to(x)[None].expand(n, *patch.shape), grid, mode="bilinear",
                            padding_mode="border", align_corners=False)  # fmt: skip
    where = _covered(grid, shape, size)
    return x * (1 - where) + content * where
