"""Who is a member: the deterministic split of the train split a membership study works on.

A seeded permutation of the train split gives the members (the target's whole training set), as many non-members,
and the rest. The members and the non-members (the pool, members first) are each cut in halves: the attacker's
half, on which ART's black-box attack is fitted (it needs labelled members and non-members), and the evaluated half,
on which every attack is scored, so that their numbers are comparable. The control model trains on the rest.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from bridge.data.dataset import Dataset

_MEMBERS, _SHADOWS, _ART, _PDTP = 0, 1, 2, 3  # streams of the study's seed


@dataclass(frozen=True)
class Split:
    members: np.ndarray  # indices into the train split
    nonmembers: np.ndarray
    rest: np.ndarray  # never in the pool: the control's data, and the attacker's besides its halves
    fit: np.ndarray  # positions in the pool: the attacker's halves of the members and non-members
    evaluated: np.ndarray  # positions in the pool: the other halves, on which every attack is scored

    @property
    def pool(self) -> np.ndarray:
        """The members then the non-members (train-split indices): every model's logits are kept on these."""
        return np.concatenate([self.members, self.nonmembers])

    def is_member(self, positions: np.ndarray) -> np.ndarray:
        return positions < len(self.members)

    @property
    def attacker(self) -> np.ndarray:
        """Train-split indices the attacker may train shadow models on: its halves of the pool, and the rest."""
        return np.concatenate([self.pool[self.fit], self.rest])


def draw(n_train: int, members: int, seed: int) -> Split:
    """`members` members and as many non-members from a train split of `n_train` samples (ValueError: one line)."""
    if 2 * members >= n_train:
        raise ValueError(f"membership.members: {members} members and as many non-members need more than the "
                         f"{n_train} samples of the train split; at most {(n_train - 1) // 2}")  # fmt: skip
    rng = np.random.default_rng([seed, _MEMBERS])
    order = rng.permutation(n_train)
    m = members
    halves = [rng.permutation(m), m + rng.permutation(m)]  # pool positions of the members, then the non-members
    fit = np.sort(np.concatenate([h[: m // 2] for h in halves]))
    evaluated = np.sort(np.concatenate([h[m // 2 :] for h in halves]))
    return Split(order[:m], order[m : 2 * m], order[2 * m :], fit, evaluated)


def control_indices(split: Split) -> np.ndarray:
    """The control's training set: as many samples as the members (or all there are) from outside the pool."""
    return split.rest[: len(split.members)]


def shadow_sets(split: Split, variant: str, count: int, seed: int) -> list[np.ndarray]:
    """The training sets (train-split indices) of LiRA's `count` shadow models. Online: halves of the pool, each
    example IN exactly count // 2 of them (Carlini et al.'s balanced draw). Offline: OUT models only, each trained on
    a random draw of as many samples as the members from the attacker's data (never an evaluated example)."""
    rng = np.random.default_rng([seed, _SHADOWS, count, variant == "online"])
    pool = split.pool
    if variant == "online":
        inside = rng.uniform(size=(count, len(pool))).argsort(0) < count // 2
        return [pool[row] for row in inside]
    attacker = split.attacker
    size = min(len(split.members), len(attacker))
    return [np.sort(rng.choice(attacker, size=size, replace=False)) for _ in range(count)]


def pdtp_members(split: Split, samples: int, seed: int) -> np.ndarray:
    """The positions among the members of the `samples` members PDTP scores (it retrains once per member)."""
    rng = np.random.default_rng([seed, _PDTP])
    return np.sort(rng.choice(len(split.members), size=samples, replace=False))


def art_rng_seed(seed: int) -> int:
    """The seed of ART's own draws (its shadow datasets, its attack models) for the study's `seed`."""
    return int(np.random.default_rng([seed, _ART]).integers(2**31 - 1))


def subset(data: Dataset, indices: np.ndarray, name: str) -> Dataset:
    """The samples `indices` of `data` (a training set of the study's models)."""
    index = torch.from_numpy(np.asarray(indices, np.int64))
    return Dataset(f"{data.name}-{name}", data.x[index], data.y[index], data.n_classes, data.bounds)
