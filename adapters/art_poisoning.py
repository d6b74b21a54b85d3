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

Keras models: the clean-label proxy is the evasion adapter's TensorFlowV2Classifier (NCHW, as the bridge's triggers
need); the defences that read the network's layers (activation, spectral, Neural Cleanse) get ART's KerasClassifier
over the Keras network itself (NHWC: the inputs are transposed here). ART's `NeuralCleanse` transformer forwards only
the model to `KerasNeuralCleanse`, so logits would be read as probabilities (`use_logits` left False): the class is
built here with every argument. Two of its traps on Keras 3 are undone (`_NeuralCleanse`), and its pruning always
prunes 30 % of the last hidden layer (see `neural_cleanse`).
"""

from __future__ import annotations

import contextlib
import copy
import io
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
from torch import nn

from adapters.art_adapter import ArtAdapter, pytorch_classifier
from bridge.models.adversarial_training import seeded_numpy
from bridge.models.keras import KerasModel
from bridge.models.keras_zoo import nhwc

Trigger = Callable[[np.ndarray], np.ndarray]


def estimator(net: nn.Module | KerasModel, input_shape: tuple[int, ...], n_classes: int, bounds: tuple[float, float],
              device: torch.device) -> Any:  # fmt: skip
    """ART's classifier over `net` on NCHW inputs (its logits, cross-entropy): a PyTorchClassifier, or for a Keras
    model the evasion adapter's TensorFlowV2Classifier."""
    if isinstance(net, KerasModel):
        return ArtAdapter.classifier(net)
    return pytorch_classifier(net, input_shape, n_classes, (float(bounds[0]), float(bounds[1])), device)


def keras_classifier(model: KerasModel) -> Any:
    """ART's KerasClassifier over the Keras network of `model` (NHWC inputs, logits), the model's normalisation as
    ART's preprocessing: the estimator whose layers ART's activation and spectral defences read."""
    from art.estimators.classification import KerasClassifier

    mean, std = model.normalize if model.normalize is not None else (0.0, 1.0)
    return KerasClassifier(model=model.net, use_logits=True, channels_first=False, clip_values=model.bounds,
                           preprocessing_defences=None, postprocessing_defences=None,
                           preprocessing=(np.asarray(mean, np.float32), np.asarray(std, np.float32)), input_layer=0,
                           output_layer=0)  # fmt: skip


def _layout(classifier: Any, x: np.ndarray) -> np.ndarray:
    """NCHW inputs as `classifier` takes them (NHWC for a Keras network)."""
    return x if classifier.channels_first else nhwc(x)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """ART's KerasNeuralCleanse prints every step's accuracy and Keras' predict a progress bar: kept off the
    bridge's output."""
    sink = io.StringIO()
    with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
        yield


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

    defence = ActivationDefence(classifier=classifier, x_train=_layout(classifier, x),
                                y_train=_one_hot(y, classifier.nb_classes), generator=None,
                                ex_re_threshold=None)  # fmt: skip
    with seeded_numpy(seed), _quiet():
        _, is_clean = defence.detect_poison(nb_clusters=cfg.nb_clusters, nb_dims=cfg.nb_dims, reduce=cfg.reduce,
                                            cluster_analysis=cfg.cluster_analysis)  # fmt: skip
    return np.asarray(is_clean) == 0


def spectral_flags(classifier: Any, x: np.ndarray, y: np.ndarray, cfg: Any, seed: int) -> np.ndarray:
    """ART's SpectralSignatureDefense on the (poisoned) training set: True where it finds a sample poisonous."""
    from art.defences.detector.poison import SpectralSignatureDefense

    defence = SpectralSignatureDefense(classifier=classifier, x_train=_layout(classifier, x),
                                       y_train=_one_hot(y, classifier.nb_classes),
                                       expected_pp_poison=cfg.expected_pp_poison, batch_size=cfg.batch_size,
                                       eps_multiplier=cfg.eps_multiplier)  # fmt: skip
    with seeded_numpy(seed), _quiet():
        _, is_clean = defence.detect_poison()
    return np.asarray(is_clean) == 0


def _neural_cleanse_class() -> type:
    """ART's KerasNeuralCleanse with two traps of ART 1.20.1 on Keras 3 undone, and the masks it reverse-engineers
    kept (`masks`, per class) so that the bridge computes the anomaly index itself.

    - `reset` (called before each class) zeroes every optimizer variable, and Keras 3 keeps the learning rate in one:
      every class's mask would stay at its random start, all L1 norms equal and nothing flagged. The rate is set back.
    - `reset` leaves the mask and pattern where the previous class's search ended, so each class's search would start
      from another class's trigger: they are set back to the random start ART drew, as Neural Cleanse searches each
      class on its own."""
    from art.estimators.poison_mitigation.neural_cleanse import KerasNeuralCleanse

    class _NeuralCleanse(KerasNeuralCleanse):
        def __init__(self, **kwargs: Any):
            super().__init__(**kwargs)
            self.start = (self.mask_tensor_raw.numpy(), self.pattern_tensor_raw.numpy())
            self.masks: dict[int, np.ndarray] = {}
            self.flagged: list[int] = []

        def reset(self) -> None:
            super().reset()
            self.opt.learning_rate.assign(self.learning_rate)
            self.mask_tensor_raw.assign(self.start[0])
            self.pattern_tensor_raw.assign(self.start[1])

        def generate_backdoor(self, x_val: np.ndarray, y_val: np.ndarray, y_target: np.ndarray) -> Any:
            mask, pattern = super().generate_backdoor(x_val, y_val, y_target)
            self.masks[int(np.argmax(y_target))] = np.asarray(mask)
            return mask, pattern

        def outlier_detection(self, x_val: np.ndarray, y_val: np.ndarray) -> Any:
            found = super().outlier_detection(x_val, y_val)
            self.flagged = [int(label) for label, _, _ in found]
            return found

    return _NeuralCleanse


def neural_cleanse(model: KerasModel, x_val: np.ndarray, y_val: np.ndarray, cfg: Any,
                   seed: int) -> tuple[np.ndarray, list[int]]:  # fmt: skip
    """ART's Neural Cleanse on the Keras network of `model`, searched on the clean NCHW samples `x_val`, then ART's
    pruning mitigation, which changes the network's weights in place. Returns the reverse-engineered masks (one per
    class, NHWC) and the classes ART flagged (and mitigated).

    ART's pruning zeroes last-hidden-layer neurons, ranked by how much more the flagged class's validation samples
    activate them with its trigger than without, until the trigger stops working, or 30 % of them: it judges the
    trigger by comparing the network's outputs with one-hot labels for equality, which logits never meet, so it
    always prunes 30 %. ART's unlearning retrains on the flagged class's own samples with its trigger and their own
    label, which teaches nothing against a trigger aimed at that class, and its filtering abstains in ART's predict
    without changing the model: neither is offered."""
    import keras

    with seeded_numpy(seed), _quiet():
        keras.utils.set_random_seed(seed)
        classifier = _neural_cleanse_class()(
            model=model.net, use_logits=True, channels_first=False, clip_values=model.bounds,
            preprocessing_defences=None, postprocessing_defences=None, preprocessing=(0.0, 1.0), input_layer=0,
            output_layer=0, steps=cfg.steps, init_cost=cfg.init_cost, norm=cfg.norm, learning_rate=cfg.learning_rate,
            attack_success_threshold=cfg.attack_success_threshold, patience=cfg.patience, early_stop=cfg.early_stop,
            early_stop_threshold=cfg.early_stop_threshold, early_stop_patience=cfg.early_stop_patience,
            cost_multiplier=cfg.cost_multiplier, batch_size=cfg.batch_size,
        )  # fmt: skip
        classifier.mitigate(nhwc(x_val), _one_hot(y_val, model.n_classes), mitigation_types=["pruning"])
    return np.stack([classifier.masks[c] for c in range(model.n_classes)]), classifier.flagged
