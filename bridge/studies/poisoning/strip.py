"""STRIP (Gao et al. 2019), computed by the bridge from the model's outputs.

Each input is superimposed on `num_samples` clean images drawn at random (a 50/50 blend, as ART's STRIP does); an
input carrying a learned trigger keeps its prediction whatever it is blended with, so the entropy of the model's
probabilities over the classes stays low. The score of an input is the mean over its blends of that entropy (bits);
the threshold is the `false_acceptance_rate` quantile of a normal fitted to the scores of clean validation inputs,
and an input scoring at or below it is flagged.

ART's `STRIPMixin` is not used: it takes `scipy.stats.entropy(predictions, axis=0)`, the entropy of each class's
column across the blends instead of each blend's entropy across the classes, which does not measure how confident
the model stays. On the digits pixel backdoor (10 % poisoned, ASR 0.93; false acceptance rate 0.05, 20 blends, 100
validation inputs) ART's STRIP flagged 5.3 % of the triggered inputs and 4.5 % of the clean ones (chance), this one
53 % and 3.9 %.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.stats import norm

from bridge.studies.poisoning.metrics import Net, device_of


@torch.no_grad()
def scores(net: Net, x: torch.Tensor, pool: torch.Tensor, num_samples: int, seed: int) -> np.ndarray:
    """Each input's mean entropy (bits) of the model's probabilities over its `num_samples` blends with `pool`."""
    device = device_of(net)
    generator = torch.Generator().manual_seed(seed)
    out = []
    for xi in x:
        others = pool[torch.randint(len(pool), (num_samples,), generator=generator)]
        p = net((0.5 * xi + 0.5 * others).to(device)).softmax(1).double()
        out.append(float(-(p * torch.log2(p.clamp_min(1e-300))).sum(1).mean()))
    return np.asarray(out)


def threshold(clean_scores: np.ndarray, false_acceptance_rate: float) -> float:
    """The score below which a clean input falls with probability `false_acceptance_rate`, under a normal fit."""
    mean, std = norm.fit(clean_scores)
    return float(norm.ppf(false_acceptance_rate, loc=mean, scale=std))


def flags(net: Net, x: torch.Tensor, validation: torch.Tensor, num_samples: int, false_acceptance_rate: float,
          seed: int) -> np.ndarray:  # fmt: skip
    """True where STRIP flags an input of `x` as triggered, its threshold set on the clean `validation` inputs, which
    are also the images every input is blended with."""
    cut = threshold(scores(net, validation, validation, num_samples, seed), false_acceptance_rate)
    return scores(net, x, validation, num_samples, seed + 1) <= cut
