"""Adversarial-example detectors: ART's `BinaryInputDetector` over a small zoo network, trained on clean vs
adversarial examples from one toolkit and evaluated on every toolkit's; the rates are the bridge's own counts over
the detector's flags, and training and evaluation samples never overlap.

ART is reached only through `adapters.art_services`, imported when a detector is trained.
"""

from __future__ import annotations

import importlib
from typing import Any

import numpy as np
import pandas as pd
import torch
from pydantic import Field, PositiveInt, field_validator

from bridge.attacks.spec import TOOLKITS
from bridge.core.schema import Strict


def _art() -> Any:
    return importlib.import_module("adapters.art_services")


class DetectorConfig(Strict):
    """A binary clean/adversarial detector: a zoo network trained with Adam on one toolkit's examples."""

    train_toolkit: str
    arch: str = "small_cnn"
    epochs: PositiveInt = 20
    batch_size: PositiveInt = 64
    lr: float = Field(default=1e-3, gt=0)
    seed: int = 0
    holdout: float = Field(default=0.3, gt=0, lt=1)  # the share of samples kept out of training, for evaluation

    @field_validator("train_toolkit")
    @classmethod
    def _toolkit(cls, value: str) -> str:
        if value not in TOOLKITS:
            raise ValueError(f"unknown toolkit '{value}'; allowed: {', '.join(TOOLKITS)}")
        return value

    @field_validator("arch")
    @classmethod
    def _arch(cls, value: str) -> str:
        from bridge.models.zoo import ARCHITECTURES

        if value not in ARCHITECTURES:
            raise ValueError(f"unknown architecture '{value}'; allowed: {', '.join(ARCHITECTURES)}")
        return value


def holdout_split(n: int, holdout: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, evaluation) sample indices, disjoint and sorted: a `seed`ed permutation of range(n), its first
    round(holdout * n) (at least 1, at most n - 1) for evaluation."""
    if n < 2:
        raise ValueError(f"a detector study needs at least 2 samples, got {n}")
    n_eval = min(max(round(holdout * n), 1), n - 1)
    order = np.random.default_rng(seed).permutation(n)
    return np.sort(order[n_eval:]), np.sort(order[:n_eval])


def train_detector(train_clean: torch.Tensor, train_adv: torch.Tensor, cfg: DetectorConfig) -> Any:
    """ART's BinaryInputDetector trained on clean (label 0) + adversarial (label 1) inputs, on their device.

    Deterministic for cfg.seed: the network's initialisation and ART's shuffling draw from torch's global RNG,
    seeded inside a forked RNG state (the caller's state is left as it was).
    """
    from bridge.models.zoo import build

    device = train_clean.device
    x = torch.cat([train_clean, train_adv]).detach().cpu().numpy()
    labels = np.concatenate([np.zeros(len(train_clean), np.int64), np.ones(len(train_adv), np.int64)])
    art = _art()
    cuda = [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        torch.manual_seed(cfg.seed)
        net = build(cfg.arch, tuple(train_clean.shape[1:]), 2)
        detector = art.binary_input_detector(net, tuple(train_clean.shape[1:]), cfg.lr, device)
        art.fit_binary_detector(detector, x, labels, cfg.batch_size, cfg.epochs)
    return detector


def auc(adv_scores: np.ndarray, clean_scores: np.ndarray) -> float:
    """P(score of an adversarial input > score of a clean one), ties counting half (the ROC AUC)."""
    if not len(adv_scores) or not len(clean_scores):
        return float("nan")
    clean = np.sort(clean_scores)
    below = np.searchsorted(clean, adv_scores, side="left")
    ties = np.searchsorted(clean, adv_scores, side="right") - below
    return float((below + 0.5 * ties).sum() / (len(adv_scores) * len(clean)))


def detector_study(
    train_clean: torch.Tensor,
    train_adv: torch.Tensor,
    eval_clean: torch.Tensor,
    eval_adv: dict[str, torch.Tensor],
    cfg: DetectorConfig,
    eval_success: dict[str, torch.Tensor] | None = None,
) -> pd.DataFrame:
    """Train a detector on (train_clean, train_adv) and evaluate it on every toolkit's `eval_adv`.

    The caller keeps training and evaluation samples disjoint (`detector_study_on` does it by sample index).
    One row per evaluated toolkit: toolkit, trained_on, n (adversarial inputs), detection_rate (the share flagged),
    n_clean, false_positive_rate (the share of eval_clean flagged: the same in every row), auc (detector score
    logit_adv - logit_clean, adversarial vs clean); with `eval_success` (per toolkit, True where the example fools
    the model) also n_successful and detection_rate_successful over those examples alone.
    """
    art = _art()
    detector = train_detector(train_clean, train_adv, cfg)
    clean_flags, clean_logits = art.detect_adversarial(detector, eval_clean.detach().cpu().numpy(), cfg.batch_size)
    clean_scores = clean_logits[:, 1] - clean_logits[:, 0]
    rows = []
    for toolkit, adv in eval_adv.items():
        flags, logits = art.detect_adversarial(detector, adv.detach().cpu().numpy(), cfg.batch_size)
        row: dict[str, Any] = {
            "toolkit": toolkit,
            "trained_on": cfg.train_toolkit,
            "n": len(flags),
            "detection_rate": float(flags.mean()) if len(flags) else float("nan"),
            "n_clean": len(clean_flags),
            "false_positive_rate": float(clean_flags.mean()) if len(clean_flags) else float("nan"),
            "auc": auc(logits[:, 1] - logits[:, 0], clean_scores),
        }
        if eval_success is not None:
            hit = eval_success[toolkit].detach().cpu().numpy().astype(bool)
            row["n_successful"] = int(hit.sum())
            row["detection_rate_successful"] = float(flags[hit].mean()) if hit.any() else float("nan")
        rows.append(row)
    return pd.DataFrame(rows)


def detector_study_on(
    x: torch.Tensor,
    adv: dict[str, torch.Tensor],
    cfg: DetectorConfig,
    success: dict[str, torch.Tensor] | None = None,
) -> pd.DataFrame:
    """`detector_study` on one sample set: x and, per toolkit, the adversarial examples of the same samples.

    The samples are split by index with `holdout_split(len(x), cfg.holdout, cfg.seed)`: the detector trains on the
    clean inputs and `adv[cfg.train_toolkit]` of the training indices only, and every toolkit is evaluated on the
    evaluation indices only, so no sample (clean or attacked, by any toolkit) is seen in both.
    """
    if cfg.train_toolkit not in adv:
        raise ValueError(f"no adversarial examples from train_toolkit '{cfg.train_toolkit}' (have {', '.join(adv)})")
    for toolkit, examples in adv.items():
        if examples.shape != x.shape:
            raise ValueError(f"{toolkit}: adversarial examples of shape {tuple(examples.shape)}, x is {tuple(x.shape)}")
    train, held = (torch.from_numpy(i).to(x.device) for i in holdout_split(len(x), cfg.holdout, cfg.seed))
    eval_success = None if success is None else {t: s[held.to(s.device)] for t, s in success.items()}
    return detector_study(
        x[train], adv[cfg.train_toolkit][train], x[held], {t: a[held] for t, a in adv.items()}, cfg, eval_success
    )
