"""ART's membership inference attacks (ART 1.20.1), as membership scores the bridge judges itself.

Every constructor argument is written out, and every training ART does has its epochs and batch size explicit.
ART's estimator is the `PyTorchClassifier` of the attack adapter over the target network: its `predict` gives the
network's logits, which is what ART's black-box attack takes as "prediction" features. ART draws the attack models'
randomness (sklearn's forests, its nn's initialisation) from NumPy's and torch's global generators: both are seeded
with the task's seed. The bridge computes every metric from the scores returned here.
"""

from __future__ import annotations

import copy
import functools
from typing import Any

import numpy as np
import torch
from torch import nn

from adapters.art_adapter import pytorch_classifier
from bridge.models.adversarial_training import seeded_numpy
from bridge.models.training import SCHEDULES, make_optimizer


def estimator(net: nn.Module, input_shape: tuple[int, ...], n_classes: int, bounds: tuple[float, float],
              device: torch.device, optimizer: torch.optim.Optimizer | None = None) -> Any:  # fmt: skip
    """ART's classifier over `net` (cross-entropy; an `optimizer` only where ART trains copies of it)."""
    return pytorch_classifier(net, input_shape, n_classes, (float(bounds[0]), float(bounds[1])), device,
                              optimizer=optimizer)  # fmt: skip


def gap_scores(classifier: Any, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """ART's rule-based attack: 1 for a correctly classified sample (member), else 0."""
    from art.attacks.inference.membership_inference import MembershipInferenceBlackBoxRuleBased

    attack = MembershipInferenceBlackBoxRuleBased(classifier=classifier)
    # ART one-hot encodes y with as many classes as `y` holds distinct values: give it one-hot labels already.
    return attack.infer(x, _one_hot(y, classifier.nb_classes)).astype(np.float64).ravel()


def _black_box(classifier: Any, input_type: str, cfg: Any) -> Any:
    from art.attacks.inference.membership_inference import MembershipInferenceBlackBox

    return MembershipInferenceBlackBox(
        estimator=classifier,
        input_type=input_type,
        attack_model_type=cfg.model_type,
        attack_model=None,
        scaler_type=None if cfg.scaler == "none" else cfg.scaler,
        nn_model_epochs=cfg.nn_epochs,
        nn_model_batch_size=cfg.nn_batch_size,
        nn_model_learning_rate=cfg.nn_learning_rate,
    )


def black_box_scores(classifier: Any, fit: tuple[np.ndarray, np.ndarray, np.ndarray], x: np.ndarray, y: np.ndarray,
                     cfg: Any, seed: int) -> np.ndarray:  # fmt: skip
    """ART's black-box attack fitted on `fit` = (x, y, is_member) of the target, scores (member probabilities) of
    (x, y)."""
    fx, fy, member = fit
    attack = _black_box(classifier, cfg.input_type, cfg)
    with seeded_numpy(seed):
        torch.manual_seed(seed)
        attack.fit(x=fx[member], y=fy[member], test_x=fx[~member], test_y=fy[~member])
        return _member_probability(attack.infer(x, y, probabilities=True))


def shadow_scores(classifier: Any, template: Any, data: tuple[np.ndarray, np.ndarray], x: np.ndarray, y: np.ndarray,
                  cfg: Any, training: Any, seed: int) -> np.ndarray:  # fmt: skip
    """ART's ShadowModels: `cfg.shadow_models` copies of `template` (an untrained estimator with an optimizer) trained
    by ART on random halves of the attacker's `data`, whose predictions fit a black-box attack (prediction input),
    which then scores (x, y) on the target `classifier`. ART trains with its own loop: the target's epochs, batch
    size and optimizer (a short last batch dropped, for batch norm), none of the bridge's training options
    (augmentation, label smoothing, schedules)."""
    from art.attacks.inference.membership_inference import ShadowModels

    with seeded_numpy(seed):
        torch.manual_seed(seed)
        shadows = ShadowModels(shadow_model_template=template, num_shadow_models=cfg.shadow_models,
                               disjoint_datasets=False, random_state=seed)  # fmt: skip
        for model in shadows.get_shadow_models():  # ShadowModels calls fit(x, y): its epochs and batch set here
            model.fit = functools.partial(
                model.fit, batch_size=training.batch_size, nb_epochs=training.epochs, training_mode=True,
                drop_last=True, scheduler=None, verbose=False,
            )  # fmt: skip
        (mx, my, mpred), (nx, ny, npred) = shadows.generate_shadow_dataset(data[0], data[1], member_ratio=0.5)
        attack = _black_box(classifier, "prediction", cfg)
        attack.fit(x=mx, y=my, test_x=nx, test_y=ny, pred=mpred, test_pred=npred)
        return _member_probability(attack.infer(x, y, probabilities=True))


def shapr_scores(net: nn.Module, input_shape: tuple[int, ...], n_classes: int, bounds: tuple[float, float],
                 device: torch.device, train: tuple[np.ndarray, np.ndarray],
                 test: tuple[np.ndarray, np.ndarray], knn_metric: str | None) -> np.ndarray:  # fmt: skip
    """ART's SHAPr leakage of each sample of `train` = (x, y), the model's training samples, against `test` = (x, y),
    held-out samples: the Shapley value of each training sample to a KNN (sklearn's, `knn_metric`) fitted on the
    model's outputs on `train` that labels `test` (above 0: a leak, ART says). The paper's KNN works on the output
    probabilities and ART feeds it `predict`, so the estimator here is over softmax(`net`) (the attacks' estimator
    gives logits). Nothing random: no seed."""
    from art.metrics.privacy import SHAPr

    probabilities = nn.Sequential(net, nn.Softmax(dim=1)).eval()
    classifier = estimator(probabilities, input_shape, n_classes, bounds, device)
    return np.asarray(
        SHAPr(target_estimator=classifier, x_train=train[0], y_train=train[1], x_test=test[0], y_test=test[1],
              knn_metric=knn_metric),  # None: KNeighborsClassifier()'s default metric (minkowski, p=2: Euclidean)
        np.float64,
    ).ravel()  # fmt: skip


def pdtp_scores(net: nn.Module, template: nn.Module, input_shape: tuple[int, ...], n_classes: int,
                bounds: tuple[float, float], device: torch.device,
                cases: list[tuple[np.ndarray, np.ndarray, np.ndarray]], cfg: Any, training: Any,
                seed: int) -> np.ndarray:  # fmt: skip
    """ART's PDTP of each case (x, y, indexes): for each sample `indexes` of x, ART resets `template` (an untrained
    copy of `net`'s architecture), trains it on x without that sample, `cfg.num_iter` times, and compares its binned
    probabilities on x with `net`'s (trained by the bridge on x). Returns (n, 3): per sample, ART's average, worst
    and standard deviation over the retrainings.

    ART's `fit(x, y)` gets the bridge's `training` written out: its epochs, batch size, optimizer (state and
    learning rate restored before every retraining: ART's `reset` re-initialises the weights only), a fresh lr
    schedule stepped per epoch, the loss with its label smoothing, and the bridge's drop of a last batch of one.
    Not the bridge's random draws: ART's initialisation (`reset_parameters`) and shuffle come from torch's global
    generators, seeded with `seed` and restored after (the options ART's loop lacks are refused before:
    `pdtp_unsupported`)."""
    from art.metrics.privacy.membership_leakage import PDTP, ComparisonType

    target = estimator(net, input_shape, n_classes, bounds, device)
    optimizer = make_optimizer(template.parameters(), training)
    fresh = copy.deepcopy(optimizer.state_dict())
    extra = pytorch_classifier(template, input_shape, n_classes, (float(bounds[0]), float(bounds[1])), device,
                               loss=nn.CrossEntropyLoss(label_smoothing=training.label_smoothing),
                               optimizer=optimizer)  # fmt: skip
    fit = extra.fit

    def retrain(x: np.ndarray, y: np.ndarray) -> None:  # what PDTP calls after extra.reset()
        optimizer.load_state_dict(fresh)
        fit(x, y, batch_size=training.batch_size, nb_epochs=training.epochs, training_mode=True,
            drop_last=len(x) > 1 and len(x) % training.batch_size == 1,
            scheduler=SCHEDULES[training.schedule](optimizer, training), verbose=False)  # fmt: skip

    extra.fit = retrain
    comparison = {"ratio": ComparisonType.RATIO, "difference": ComparisonType.DIFFERENCE}[cfg.comparison_type]
    cuda = [device] if device.type == "cuda" else []
    with seeded_numpy(seed), torch.random.fork_rng(devices=cuda):  # torch's global generators restored after
        torch.manual_seed(seed)
        return np.concatenate([
            np.stack(PDTP(target_estimator=target, extra_estimator=extra, x=x, y=y, indexes=indexes,
                          num_iter=cfg.num_iter, comparison_type=comparison), axis=1)
            for x, y, indexes in cases
        ]).astype(np.float64)  # fmt: skip


def _member_probability(inferred: np.ndarray) -> np.ndarray:
    """The member column of what `infer(probabilities=True)` returns ((n,), (n, 1) or (n, 2) by attack model)."""
    inferred = np.asarray(inferred, np.float64)
    return inferred[:, -1] if inferred.ndim == 2 else inferred


def _one_hot(y: np.ndarray, n_classes: int) -> np.ndarray:
    return np.eye(n_classes, dtype=np.float32)[y]
