"""ART's poisoning attacks and defences (ART 1.20.1) on NCHW data, for the poisoning study.

The bridge reaches this module through importlib (bridge/studies/poisoning/run.py) and computes every number it
reports (attack success rate, clean accuracy, the defences' TPR and FPR) itself, from its own predictions and from
the samples these functions return or flag. Every constructor argument is written out (no ART default left in
force) and ART's randomness (NumPy's and torch's global generators) is seeded by the caller's seed.

Traps handled here: ART's `add_single_bd` writes a row of one channel on NCHW inputs, so the backdoor's perturbation
is the bridge's own trigger (`trigger`: NCHW in, NCHW out); `PoisoningAttackCleanLabelBackdoor` draws its poisons
*with replacement* and `GradientMatchingAttack` does not return which samples it poisoned, so the poisoned samples
are those whose inputs changed. ART's STRIP is not used: its entropy is taken across the blends instead of across
the classes (bridge/studies/poisoning/strip.py computes STRIP itself and says why).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from adapters.art_adapter import pytorch_classifier
from bridge.models.adversarial_training import seeded_numpy

Trigger = Callable[[np.ndarray], np.ndarray]


def estimator(net: nn.Module, input_shape: tuple[int, ...], n_classes: int, bounds: tuple[float, float],
              device: torch.device) -> Any:  # fmt: skip
    """ART's classifier over `net` (its logits, cross-entropy)."""
    return pytorch_classifier(net, input_shape, n_classes, (float(bounds[0]), float(bounds[1])), device)


def _one_hot(y: np.ndarray, n_classes: int) -> np.ndarray:
    return np.eye(n_classes, dtype=np.float32)[y]


def _backdoor(trigger: Trigger) -> Any:
    from art.attacks.poisoning import PoisoningAttackBackdoor

    return PoisoningAttackBackdoor(perturbation=trigger)


def dirty_label(x: np.ndarray, target: int, n_classes: int, trigger: Trigger) -> tuple[np.ndarray, np.ndarray]:
    """BadNets: `x` triggered by ART's PoisoningAttackBackdoor and labelled `target`; (inputs, labels)."""
    labels = _one_hot(np.full(len(x), target), n_classes)
    poisoned, y = _backdoor(trigger).poison(x.astype(np.float32), y=labels, broadcast=False)
    return poisoned.astype(np.float32), np.asarray(y).argmax(1)


def clean_label(proxy: Any, trigger: Trigger, x: np.ndarray, y: np.ndarray, target: int, pp_poison: float,
                cfg: Any, seed: int) -> np.ndarray:  # fmt: skip
    """ART's clean-label backdoor on the training set (`proxy`: ART's classifier over the clean model): a share
    `pp_poison` of the target class's samples (drawn with replacement) pushed away from it by PGD, then triggered.
    Returns the training inputs, those poisoned changed; the labels are unchanged."""
    from art.attacks.poisoning import PoisoningAttackCleanLabelBackdoor

    k = proxy.nb_classes
    attack = PoisoningAttackCleanLabelBackdoor(
        backdoor=_backdoor(trigger), proxy_classifier=proxy, target=_one_hot(np.array([target]), k)[0],
        pp_poison=pp_poison, norm=np.inf if cfg.norm == "inf" else 2, eps=cfg.eps, eps_step=cfg.eps_step,
        max_iter=cfg.max_iter, num_random_init=cfg.num_random_init,
    )  # fmt: skip
    with seeded_numpy(seed):
        torch.manual_seed(seed)
        poisoned, _ = attack.poison(x.astype(np.float32), y=_one_hot(y, k), broadcast=True)
    return poisoned.astype(np.float32)


def schedule(learning_rate: float, epochs: int) -> tuple[list[float], list[int]]:
    """ART's default gradient-matching schedule (lr /10 at epochs 100, 150, 200, 220 of 250), scaled to `epochs`."""
    return ([learning_rate / 10**i for i in range(4)], [max(1, round(epochs * m / 250)) for m in (100, 150, 200, 220)])


def gradient_matching(net: nn.Module, input_shape: tuple[int, ...], n_classes: int, bounds: tuple[float, float],
                      device: torch.device, x_trigger: np.ndarray, target: int, x: np.ndarray, y: np.ndarray,
                      fraction: float, cfg: Any, seed: int) -> np.ndarray:  # fmt: skip
    """ART's GradientMatchingAttack with a copy of the clean model as its substitute: `fraction` of the training set,
    drawn from the target class, perturbed so that `x_trigger` is classified as `target`. Returns the training
    inputs, those poisoned changed; the labels are unchanged."""
    from art.attacks.poisoning import GradientMatchingAttack

    substitute = estimator(copy.deepcopy(net), input_shape, n_classes, bounds, device)
    attack = GradientMatchingAttack(
        classifier=substitute, percent_poison=fraction, epsilon=cfg.epsilon, max_trials=cfg.max_trials,
        max_epochs=cfg.max_epochs, learning_rate_schedule=schedule(cfg.learning_rate, cfg.max_epochs),
        batch_size=cfg.batch_size, clip_values=(float(bounds[0]), float(bounds[1])), verbose=0,
    )  # fmt: skip
    with seeded_numpy(seed):
        torch.manual_seed(seed)
        poisoned, _ = attack.poison(x_trigger.astype(np.float32), np.full(len(x_trigger), target),
                                    x.astype(np.float32), y)  # fmt: skip
    return poisoned.astype(np.float32)


def activation_flags(classifier: Any, x: np.ndarray, y: np.ndarray, cfg: Any, seed: int) -> np.ndarray:
    """ART's ActivationDefence on the (poisoned) training set: True where it finds a sample poisonous."""
    from art.defences.detector.poison import ActivationDefence

    defence = ActivationDefence(classifier=classifier, x_train=x, y_train=_one_hot(y, classifier.nb_classes),
                                generator=None, ex_re_threshold=None)  # fmt: skip
    with seeded_numpy(seed):
        _, is_clean = defence.detect_poison(nb_clusters=cfg.nb_clusters, nb_dims=cfg.nb_dims, reduce=cfg.reduce,
                                            cluster_analysis=cfg.cluster_analysis)  # fmt: skip
    return np.asarray(is_clean) == 0


def spectral_flags(classifier: Any, x: np.ndarray, y: np.ndarray, cfg: Any, seed: int) -> np.ndarray:
    """ART's SpectralSignatureDefense on the (poisoned) training set: True where it finds a sample poisonous."""
    from art.defences.detector.poison import SpectralSignatureDefense

    defence = SpectralSignatureDefense(classifier=classifier, x_train=x, y_train=_one_hot(y, classifier.nb_classes),
                                       expected_pp_poison=cfg.expected_pp_poison, batch_size=cfg.batch_size,
                                       eps_multiplier=cfg.eps_multiplier)  # fmt: skip
    with seeded_numpy(seed):
        _, is_clean = defence.detect_poison()
    return np.asarray(is_clean) == 0
