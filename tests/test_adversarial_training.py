"""Adversarial training (PGD-AT, TRADES, FGSM-AT) with examples made by each toolkit, and mixup/CutMix/noise."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from pydantic import ValidationError
from torch import nn

from bridge.attacks.adapter import get_adapter
from bridge.attacks.spec import resolve_attack
from bridge.data.dataset import Dataset, load_split, select
from bridge.models.adversarial_training import AdversarialStep, AdversarialTrainingConfig, trades_loss
from bridge.models.build import cache_key
from bridge.models.config import ModelConfig
from bridge.models.shared import SharedModel
from bridge.models.training import TrainingConfig, cutmix, gaussian_noise, mixup, train
from bridge.models.zoo import build

EPS = 0.1
EPOCHS = 4
MARGIN = 0.10  # robust accuracy over the standard model's, asserted; the measured gains are 0.16 to 0.22


def pgd(toolkit: str, **extra) -> dict:
    return {"attack": "pgd", "toolkit": toolkit, "norm": "linf", "eps": EPS, **extra}


@pytest.fixture(scope="module")
def digits() -> tuple[Dataset, Dataset]:
    return load_split("digits", "train"), load_split("digits", "test")


def trained(data: Dataset, **options) -> tuple[nn.Module, dict]:
    torch.manual_seed(0)
    net = build("small_cnn", data.input_shape, data.n_classes)
    return net, train(net, data, TrainingConfig(epochs=EPOCHS, **options))


def robust_accuracy(net: nn.Module, test: Dataset, toolkit: str) -> tuple[float, float]:
    """(clean, robust) test accuracy under 20-step PGD-linf at EPS made by `toolkit` (no random start)."""
    spec = resolve_attack(pgd(toolkit, steps=20, random_start=False))
    model = SharedModel(net, test.input_shape, test.n_classes)
    adapter = get_adapter(toolkit)
    translation = adapter.translate(spec, test.n_classes)
    with model.eval_mode():
        x_adv = adapter.build(translation, spec, model)(test.x, test.y, None)
    assert (x_adv - test.x).abs().max() <= EPS + 1e-5
    accuracy = [float((model.predict(x).argmax(1) == test.y).float().mean()) for x in (test.x, x_adv)]
    return accuracy[0], accuracy[1]


@pytest.fixture(scope="module")
def standard(digits: tuple[Dataset, Dataset]) -> tuple[float, float]:
    """(clean, robust) accuracy of the standard model, robust under ART's PGD."""
    net, _ = trained(digits[0])
    return robust_accuracy(net, digits[1], "art")


# --- robustness ------------------------------------------------------------------------------------------------------


def test_pgd_at_by_torchattacks_is_robust_under_the_other_toolkits_attacks(digits, standard) -> None:
    """Measured (4 epochs): standard 0.957 clean / 0.528 robust; PGD-AT (3 steps) 0.954 / 0.704 (ART's PGD)."""
    train_data, test = digits
    net, result = trained(train_data, adversarial={"method": "pgd_at", "attack": pgd("torchattacks", steps=3)})
    assert set(result) >= {"adversarial_accuracy_curve", "attack_forward_samples", "attack_backward_samples"}
    assert len(result["adversarial_accuracy_curve"]) == EPOCHS
    assert result["adversarial_accuracy_curve"][-1] > result["adversarial_accuracy_curve"][0]
    assert result["adversarial_accuracy_curve"][-1] < result["train_accuracy_curve"][-1]
    for toolkit in ("foolbox", "art"):
        clean, robust = robust_accuracy(net, test, toolkit)
        assert clean > 0.9
        assert robust > standard[1] + MARGIN, (toolkit, robust, standard)


@pytest.mark.parametrize("method", ["pgd_at", "trades"])
def test_arts_own_trainers_are_reachable_and_work(digits, standard, method: str) -> None:
    """`trainer: art`: ART's AdversarialTrainer (ratio 1.0, Madry) or its TRADES trainer with the ART PGD of the
    spec (eps in pixel units, unlike AdversarialTrainerMadryPGD's 0-255 defaults); judged under Foolbox's PGD."""
    train_data, test = digits
    adversarial = {"method": method, "trainer": "art", "attack": pgd("art", steps=3, step_size=0.04)}
    net, result = trained(train_data, adversarial=adversarial)
    assert result["loss_curve"] == [] and result["train_time_s"] > 0
    assert not net.training
    clean, robust = robust_accuracy(net, test, "foolbox")
    assert clean > 0.85 and robust > standard[1] + MARGIN, (clean, robust, standard)


@pytest.mark.parametrize(
    "method,attack,measured",
    [("trades", pgd("foolbox", steps=2), 0.744), ("fgsm_at", pgd("torchattacks"), 0.691)],
    ids=["trades-foolbox", "fgsm_at-torchattacks"],
)
def test_trades_and_fgsm_at_beat_standard_training_under_attack(digits, standard, method, attack, measured) -> None:
    """Measured robust accuracy at eps 0.1 (standard: 0.528): TRADES 0.744 (clean 0.939), FGSM-AT 0.691 (0.952)."""
    net, result = trained(digits[0], adversarial={"method": method, "attack": attack})
    assert all(math.isfinite(v) for v in result["loss_curve"])
    clean, robust = robust_accuracy(net, digits[1], "torchattacks")
    assert clean > 0.9
    assert robust > standard[1] + MARGIN, (method, robust, measured, standard)


# --- each toolkit makes the examples -----------------------------------------------------------------------------


@pytest.mark.parametrize("toolkit", ["art", "foolbox", "torchattacks"])
def test_each_toolkit_makes_the_training_examples(digits, toolkit: str) -> None:
    data = select(digits[0], 256, seed=0)
    torch.manual_seed(0)
    net = build("small_cnn", data.input_shape, data.n_classes)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    cfg = AdversarialTrainingConfig(method="pgd_at", attack=pgd(toolkit, steps=3))
    step = AdversarialStep(net, cfg, data.input_shape, data.n_classes, data.bounds, torch.device("cpu"))
    x, y = data.x[:64], data.y[:64]
    x_adv = step.examples(x, y)
    assert x_adv.shape == x.shape and x_adv.dtype == torch.float32
    assert (x_adv - x).abs().max() <= EPS + 1e-6 and x_adv.min() >= 0 and x_adv.max() <= 1
    assert (x_adv - x).abs().max() > 0.9 * EPS  # moved to the edge of the ball, not left at the clean input
    assert step.counters.forward_samples >= 3 * 64 and step.counters.backward_samples >= 3 * 64

    result = train(net, data, TrainingConfig(epochs=1, adversarial=cfg.model_dump()))
    assert math.isfinite(result["loss_curve"][0])
    assert result["attack_backward_samples"] >= 3 * len(data)
    assert any(not torch.equal(before[k], v) for k, v in net.state_dict().items())
    assert not net.training and not net._forward_hooks  # the counting hook left with the training's wrapper


def test_examples_are_made_in_eval_mode_with_frozen_parameters() -> None:
    """Batch-norm statistics are not updated by the attack, and no gradient is left in the parameters."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(256, 10))
    net.train()
    bn = net[1]
    mean, count = bn.running_mean.clone(), int(bn.num_batches_tracked)
    cfg = AdversarialTrainingConfig(method="trades", attack=pgd("torchattacks", steps=2))
    step = AdversarialStep(net, cfg, (1, 8, 8), 10, (0.0, 1.0), torch.device("cpu"))
    x, y = torch.rand(16, 1, 8, 8), torch.arange(16) % 10
    step.examples(x, y)
    assert torch.equal(bn.running_mean, mean) and int(bn.num_batches_tracked) == count
    assert net.training and all(p.grad is None and p.requires_grad for p in net.parameters())
    loss, clean, adv = step.loss(x, y, nn.CrossEntropyLoss())
    assert int(bn.num_batches_tracked) == count + 2  # the TRADES step: clean and adversarial passes, train mode
    assert loss.requires_grad and 0 <= adv <= 16 and 0 <= clean <= 16


def test_adversarial_training_is_deterministic_with_art_random_starts(digits) -> None:
    data = select(digits[0], 128, seed=0)
    cfg = TrainingConfig(epochs=1, batch_size=32, adversarial={"method": "fgsm_at", "attack": pgd("art")})
    states = []
    for _ in range(2):
        torch.manual_seed(0)
        net = build("small_cnn", data.input_shape, data.n_classes)
        train(net, data, cfg)
        states.append(net.state_dict())
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])


# --- configuration -------------------------------------------------------------------------------------------------


def test_fgsm_at_fills_the_fast_is_better_than_free_step() -> None:
    cfg = AdversarialTrainingConfig(method="fgsm_at", attack={**pgd("foolbox"), "eps": "8/255"})
    spec = cfg.spec()
    assert (spec.attack, spec.steps, spec.random_start, spec.restarts) == ("pgd", 1, True, 1)
    assert spec.step_size == pytest.approx(1.25 * 8 / 255) and spec.eps == pytest.approx(8 / 255)
    assert AdversarialTrainingConfig.model_validate(cfg.model_dump()) == cfg  # the resolved spec resolves to itself


@pytest.mark.parametrize("method", ["pgd_at", "trades", "fgsm_at"])
def test_a_dumped_training_config_validates_to_itself(method: str) -> None:
    """What the model record and the cache key hold can be read back (the record's config is a dump)."""
    cfg = TrainingConfig(adversarial={"method": method, "attack": pgd("foolbox")}, gaussian_augmentation=0.05)
    assert TrainingConfig.model_validate(cfg.model_dump(mode="json")) == cfg


def test_pgd_at_gets_the_catalogue_defaults_written_out() -> None:
    cfg = AdversarialTrainingConfig(method="pgd_at", attack=pgd("art"))
    assert cfg.attack["steps"] == 10 and cfg.attack["step_size"] == pytest.approx(2.5 * EPS / 10)
    assert cfg.attack["random_start"] is True and cfg.beta is None
    assert AdversarialTrainingConfig(method="trades", attack=pgd("art")).beta == 6.0


def test_every_training_option_changes_the_model_cache_key(digits) -> None:
    data = digits[0]
    base = {"arch": "small_cnn", "training": {"epochs": 2}}
    variants = [
        {"adversarial": {"method": "pgd_at", "attack": pgd("art")}},
        {"adversarial": {"method": "pgd_at", "attack": pgd("art", steps=20)}},
        {"adversarial": {"method": "pgd_at", "attack": pgd("foolbox")}},
        {"adversarial": {"method": "trades", "attack": pgd("art")}},
        {"adversarial": {"method": "trades", "attack": pgd("art"), "beta": 1.0}},
        {"gaussian_augmentation": 0.1},
        {"mixup": 0.2},
        {"cutmix": 1.0},
    ]
    keys = [cache_key(ModelConfig(**base), data)]
    for extra in variants:
        keys.append(cache_key(ModelConfig(**{**base, "training": {**base["training"], **extra}}), data))
    assert len(set(keys)) == len(keys)


@pytest.mark.parametrize(
    "options,message",
    [
        ({"method": "pgd_at", "attack": pgd("art"), "beta": 3.0}, "applies to method trades only, not pgd_at"),
        ({"method": "fgsm_at", "attack": pgd("art", steps=10)}, r"attack.steps: fgsm_at .* needs steps = 1"),
        ({"method": "fgsm_at", "attack": pgd("art", step_size=0.1)}, r"needs step_size = 0.125"),
        ({"method": "fgsm_at", "attack": pgd("art", random_start=False)}, "needs random_start"),
        ({"method": "fgsm_at", "attack": {**pgd("art"), "attack": "fgsm"}}, "write attack: pgd, not fgsm"),
        (
            {"method": "pgd_at", "attack": {"attack": "cw", "toolkit": "art", "norm": "l2"}},
            "needs a fixed-budget attack .* cw is minimum-norm",
        ),
        ({"method": "pgd_at", "attack": pgd("art", targeted="random")}, "untargeted attacks only"),
        ({"method": "pgd_at", "attack": pgd("art", stepz=3)}, "attack.stepz: unknown key"),
        ({"method": "pgd_at", "attack": {**pgd("art"), "eps": 0}}, "attack.eps: eps must be > 0"),
        ({"method": "pgd_at", "attack": {**pgd("art"), "toolkit": "cleverhans"}}, "attack.toolkit: unknown toolkit"),
        ({"method": "madry", "attack": pgd("art")}, "method"),
        ({"method": "pgd_at", "trainer": "art", "attack": pgd("foolbox")}, "trainer art runs an ART attack"),
        ({"method": "fgsm_at", "trainer": "art", "attack": pgd("art")}, "trainer art has no fgsm_at"),
    ],
)
def test_invalid_adversarial_configs_are_refused(options: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        TrainingConfig(adversarial=options)


def test_an_attack_the_toolkit_lacks_is_refused_before_training(digits) -> None:
    cfg = AdversarialTrainingConfig(method="pgd_at", attack={**pgd("torchattacks"), "norm": "l1"})
    with pytest.raises(ValueError, match="torchattacks has no pgd for norm l1"):
        cfg.check(10)
    with pytest.raises(ValueError, match="torchattacks has no pgd for norm l1"):
        train(build("small_cnn", (1, 8, 8), 10), digits[0], TrainingConfig(epochs=1, adversarial=cfg.model_dump()))


@pytest.mark.parametrize(
    "options,message",
    [
        ({"mixup": 0.2, "cutmix": 1.0}, "at most one of them"),
        ({"cutmix": 1.0, "adversarial": {"method": "pgd_at", "attack": pgd("art")}}, "cutmix does not combine"),
        ({"mixup": -1}, "greater than or equal to 0"),
        ({"gaussian_augmentation": -0.1}, "greater than or equal to 0"),
    ],
)
def test_invalid_augmentation_combinations_are_refused(options: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        TrainingConfig(**options)


# --- losses and mixing ------------------------------------------------------------------------------------------------


def test_trades_loss_is_ce_plus_beta_times_the_clean_to_adversarial_kl() -> None:
    gen = torch.Generator().manual_seed(0)
    clean, adv, y = torch.randn(8, 10, generator=gen), torch.randn(8, 10, generator=gen), torch.arange(8)
    p, q = F.softmax(clean, 1), F.softmax(adv, 1)
    kl = (p * (p.log() - q.log())).sum(1).mean()
    ce = F.cross_entropy(clean, y)
    assert float(trades_loss(clean, adv, y, 6.0, F.cross_entropy)) == pytest.approx(float(ce + 6.0 * kl), rel=1e-5)
    assert float(trades_loss(clean, clean, y, 6.0, F.cross_entropy)) == pytest.approx(float(ce), abs=1e-6)


def constant_images(n: int = 16, size: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """Image i is filled with the value i, so which image a mixed pixel came from can be read off it."""
    x = torch.arange(n, dtype=torch.float32)[:, None, None, None].expand(n, 1, size, size).contiguous()
    return x, torch.arange(n) % 10


def test_mixup_mixes_inputs_and_targets_by_the_same_seeded_lambda() -> None:
    x, y = constant_images()
    mixed = mixup(x, y, 0.4, torch.Generator().manual_seed(0))
    assert 0 < mixed.lam < 1
    partner = (mixed.x[:, 0, 0, 0] - mixed.lam * x[:, 0, 0, 0]) / (1 - mixed.lam)  # the index each was mixed with
    perm = partner.round().long()
    assert torch.allclose(partner, perm.float(), atol=1e-3) and sorted(perm.tolist()) == list(range(16))
    assert torch.equal(mixed.y_a, y) and torch.equal(mixed.y_b, y[perm])
    logits = torch.randn(16, 10, generator=torch.Generator().manual_seed(1))
    soft = mixed.lam * F.one_hot(mixed.y_a, 10) + (1 - mixed.lam) * F.one_hot(mixed.y_b, 10)
    expected = -(soft * F.log_softmax(logits, 1)).sum(1).mean()
    assert float(mixed.loss(logits, nn.CrossEntropyLoss())) == pytest.approx(float(expected), rel=1e-5)
    again = mixup(x, y, 0.4, torch.Generator().manual_seed(0))
    assert again.lam == mixed.lam and torch.equal(again.x, mixed.x)
    assert mixup(x, y, 0.4, torch.Generator().manual_seed(1)).lam != mixed.lam


def test_cutmix_pastes_one_box_and_lambda_is_the_share_left() -> None:
    x, y = constant_images(size=16)
    lams = []
    for seed in range(5):
        mixed = cutmix(x, y, 1.0, torch.Generator().manual_seed(seed))
        box = (mixed.x != x).any(0)[0]  # the pixels taken from the partner image, the same box for every image
        assert torch.equal(box, box.any(1)[:, None] & box.any(0)[None, :])  # a rectangle
        assert 1 - int(box.sum()) / 256 == pytest.approx(mixed.lam)
        for j in range(16):
            assert (mixed.x[j, 0][~box] == j).all()
            inside = mixed.x[j, 0][box]
            if len(inside):  # copied, never blended, from one partner whose label is y_b
                assert (inside == inside[0]).all() and mixed.y_b[j] == y[int(inside[0])]
        logits = torch.randn(16, 10, generator=torch.Generator().manual_seed(seed))
        expected = mixed.lam * F.cross_entropy(logits, mixed.y_a) + (1 - mixed.lam) * F.cross_entropy(logits, mixed.y_b)
        assert float(mixed.loss(logits, nn.CrossEntropyLoss())) == pytest.approx(float(expected), rel=1e-6)
        lams.append(mixed.lam)
    assert min(lams) < 0.9 and len(set(lams)) == 5
    a, b = (cutmix(x, y, 1.0, torch.Generator().manual_seed(3)) for _ in range(2))
    assert a.lam == b.lam and torch.equal(a.x, b.x) and torch.equal(a.y_b, b.y_b)


def test_gaussian_noise_is_seeded_clipped_and_of_the_given_sigma() -> None:
    x = torch.full((64, 1, 8, 8), 0.5)
    noisy = gaussian_noise(x, 0.1, (0.0, 1.0), torch.Generator().manual_seed(0))
    assert torch.equal(noisy, gaussian_noise(x, 0.1, (0.0, 1.0), torch.Generator().manual_seed(0)))
    assert float((noisy - x).std()) == pytest.approx(0.1, rel=0.05)
    clipped = gaussian_noise(x, 2.0, (0.0, 1.0), torch.Generator().manual_seed(0))
    assert clipped.min() == 0 and clipped.max() == 1


@pytest.mark.parametrize("options", [{"mixup": 0.4}, {"cutmix": 1.0}, {"gaussian_augmentation": 0.1}])
def test_augmented_training_is_deterministic_and_differs_from_plain(digits, options: dict) -> None:
    data = select(digits[0], 256, seed=0)
    curves = []
    for opts in (options, options, {}):
        torch.manual_seed(0)
        net = build("small_cnn", data.input_shape, data.n_classes)
        result = train(net, data, TrainingConfig(epochs=2, batch_size=32, **opts))
        curves.append(result["loss_curve"] + result["train_accuracy_curve"])
    assert curves[0] == curves[1] and curves[0] != curves[2]
    assert all(0 <= a <= 1 for a in curves[0][2:])
