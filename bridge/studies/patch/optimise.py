"""The bridge's own patch: a (C, P, P) tensor optimised with Adam through `geometry.apply` over random scales,
rotations and locations (Brown et al. 2017's expectation over transformations), seeded.

Targeted, it maximises the target's log-probability; untargeted, it minimises the true class's. The patch stays in
the data's bounds (clamped after every step)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from bridge.models.shared import SharedModel
from bridge.studies.patch.geometry import apply, draw


def optimise(
    model: SharedModel,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    shape: str,
    target: int | None,
    areas: tuple[float, float],
    rotation: float,
    steps: int,
    learning_rate: float,
    batch_size: int,
    seed: int,
) -> torch.Tensor:
    """A patch for `model` trained on images `x` with true labels `y` (CPU tensors), returned on the CPU."""
    generator = torch.Generator().manual_seed(seed)
    lo, hi = model.bounds
    channels, h, w = x.shape[1:]
    patch = (lo + (hi - lo) * torch.rand(channels, min(h, w), min(h, w), generator=generator)).to(model.device)
    patch.requires_grad_(True)
    optimiser = torch.optim.Adam([patch], lr=learning_rate)
    with model.eval_mode():
        for _ in range(steps):
            index = torch.randint(len(x), (min(batch_size, len(x)),), generator=generator)
            scale = areas[0] + (areas[1] - areas[0]) * torch.rand(len(index), generator=generator)
            placements = draw(scale, rotation, shape, (h, w), generator)
            logits = model(apply(x[index].to(model.device), patch, shape, placements))
            log_prob = F.log_softmax(logits, 1)
            if target is None:  # the true class's log-probability, lowered
                loss = log_prob.gather(1, y[index].to(model.device)[:, None]).mean()
            else:  # the target's, raised
                loss = -log_prob[:, target].mean()
            (patch.grad,) = torch.autograd.grad(loss, [patch])  # the patch's gradient only, not the weights'
            optimiser.step()
            with torch.no_grad():
                patch.clamp_(lo, hi)
    return patch.detach().cpu()
