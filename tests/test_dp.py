"""DP-SGD (Opacus) and early stopping: as training options (validated, cached, recorded) and on the defences axis.

Quick: refusals in one line, cache keys of models without the new options left as they were, the accountant's
direction, the batch-norm replacement recorded, a missing Opacus refused before anything is written, early stopping
on a constructed case. Slow: a real DP training on digits, reloaded from the cache, and an evasion study with a
dp_sgd defence whose parent run holds the epsilon.
"""

from __future__ import annotations

import math
import sys

import mlflow
import pytest
import torch
from pydantic import ValidationError
from torch import nn

from bridge.data.dataset import load_split
from bridge.defences.grid import parse_entry
from bridge.models.build import build_model, cache_key, check_model
from bridge.models.config import ModelConfig
from bridge.models.dp import privacy_spent, private_network
from bridge.models.errors import ModelError
from bridge.models.training import EarlyStoppingConfig, TrainingConfig, train
from bridge.models.zoo import build
from bridge.runner.study import run_scenario
from bridge.scenario.load import ScenarioError

DP = {"noise_multiplier": 1.0, "max_grad_norm": 1.0, "delta": 1e-5}
AT = {"method": "pgd_at", "attack": {"attack": "pgd", "toolkit": "torchattacks", "norm": "linf", "eps": 0.1}}
DP_TRAINING = {"epochs": 3, "lr": 0.01, "seed": 0}  # DP-SGD's clipped, noisy steps need a larger lr than Adam's 1e-3


@pytest.fixture(scope="module")
def digits_train():
    return load_split("digits", "train")


@pytest.mark.parametrize(
    ("training", "message"),
    [
        ({"dp": {"noise_multiplier": 1.0, "max_grad_norm": 1.0}}, r"dp.delta\s+Field required"),
        ({"dp": {**DP, "noise_multiplier": 0}}, "greater than 0"),
        ({"dp": {**DP, "max_grad_norm": -1}}, "greater than 0"),
        ({"dp": {**DP, "delta": 1.0}}, "less than 1"),
        ({"dp": DP, "adversarial": AT}, "dp does not combine with adversarial"),
        ({"dp": DP, "mixup": 0.2}, "dp does not combine with mixup"),
        ({"dp": DP, "cutmix": 1.0}, "dp does not combine with cutmix"),
        ({"dp": DP, "early_stopping": {"patience": 2}}, "dp does not combine with early_stopping"),
        ({"early_stopping": {"patience": 0}}, "greater than 0"),
        ({"early_stopping": {"patience": 2, "validation_fraction": 1.0}}, "less than 1"),
        ({"early_stopping": {"patience": 2}, "adversarial": {**AT, "trainer": "art", "attack": {**AT["attack"],
          "toolkit": "art"}}}, r"early_stopping is not available with ART's trainers"),
    ],
)  # fmt: skip
def test_training_config_refusals(training: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        TrainingConfig(**training)


def test_keras_refuses_the_options_it_does_not_implement() -> None:
    with pytest.raises(ValidationError, match="training: dp is implemented for PyTorch models only"):
        ModelConfig(arch="small_cnn", framework="keras", training={"dp": DP})


def test_keys_of_models_without_the_new_options_are_unchanged(digits_train) -> None:
    """Cached models stay valid: a config without dp or early_stopping dumps (and hashes) as before they existed
    (the key below was computed before); each option changes the key."""
    assert "dp" not in ModelConfig().model_dump()["training"]
    assert cache_key(ModelConfig(), digits_train) == "6b3d7229b410a5e9"
    variants = [{"dp": DP}, {"dp": {**DP, "noise_multiplier": 2.0}}, {"early_stopping": {"patience": 2}}]
    keys = {cache_key(ModelConfig(training=extra), digits_train) for extra in variants}
    assert len(keys) == 3 and "6b3d7229b410a5e9" not in keys
    for option in ({"dp": DP}, {"early_stopping": {"patience": 2}}):  # a record's config validates back
        cfg = TrainingConfig(**option)
        assert TrainingConfig.model_validate(cfg.model_dump(mode="json")) == cfg


def test_the_accountant_spends_less_with_more_noise_and_more_with_more_steps() -> None:
    """A hand check of the accountant's direction: 1257 samples in batches of 64 are 20 steps an epoch (q = 1/20)."""
    spent = {sigma: privacy_spent(TrainingConfig(dp={**DP, "noise_multiplier": sigma}).dp, 1257, 64, 3)
             for sigma in (0.8, 1.0, 2.0, 4.0)}  # fmt: skip
    eps = [spent[s]["epsilon"] for s in sorted(spent)]
    assert all(a > b for a, b in zip(eps, eps[1:], strict=False)) and all(math.isfinite(e) and e > 0 for e in eps)
    assert spent[1.0]["steps"] == 60 and spent[1.0]["sample_rate"] == pytest.approx(1 / 20)
    assert spent[1.0]["accountant"] == "rdp" and 1 < spent[1.0]["epsilon"] < 10
    dp = TrainingConfig(dp=DP).dp
    assert privacy_spent(dp, 1257, 64, 6)["epsilon"] > spent[1.0]["epsilon"]  # more epochs, more spent
    assert privacy_spent(dp, 1257, 128, 3)["epsilon"] > spent[1.0]["epsilon"]  # a larger sampling rate too


def test_batch_norm_becomes_group_norm_and_is_recorded() -> None:
    net = build("resnet18", (1, 8, 8), 10, 0.0, {"width": 4})
    fixed, replaced = private_network(net)
    assert replaced and all(line.endswith("BatchNorm2d -> GroupNorm") for line in replaced)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fixed.modules())
    assert len(replaced) == sum(isinstance(m, nn.BatchNorm2d) for m in net.modules())
    assert private_network(build("small_cnn", (1, 8, 8), 10, 0.0, {}))[1] == []  # nothing to replace


def test_a_network_opacus_cannot_fix_is_refused_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    from opacus.validators import ModuleValidator

    monkeypatch.setattr(ModuleValidator, "fix", staticmethod(lambda module: module))  # a fix that fixes nothing
    with pytest.raises(ModelError, match="training.dp: Opacus cannot train this network per sample") as info:
        private_network(nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2)))
    assert "\n" not in str(info.value)


def test_delta_must_be_below_one_over_n(digits_train) -> None:
    with pytest.raises(ModelError, match=r"training.dp.delta 0.001 is not below 1/n = 0.000796 \(1257 training"):
        check_model(ModelConfig(training={"dp": {**DP, "delta": 1e-3}}), digits_train)


def test_defences_axis_entries() -> None:
    dp = parse_entry({"kind": "dp_sgd", **DP})
    assert dp.name == "dp_sgd-1" and dp.apply(ModelConfig()).training.dp.model_dump() == DP
    assert parse_entry(dp.model_dump(mode="json", exclude_unset=True)) == dp  # a recipe's dump parses back
    es = parse_entry({"kind": "early_stopping", "patience": 3, "validation_fraction": 0.2})
    assert es.name == "early_stopping-3"
    assert es.apply(ModelConfig()).training.early_stopping == EarlyStoppingConfig(patience=3, validation_fraction=0.2)
    for raw, message in [
        ({"kind": "dp_sgd"}, "dp_sgd needs noise_multiplier, max_grad_norm, delta"),
        ({"kind": "dp_sgd", "noise_multiplier": 1.0, "max_grad_norm": 1.0}, r"dp.delta: Field required"),
        ({"kind": "dp_sgd", **DP, "value": 1.0}, "value does not apply to dp_sgd"),
        ({"kind": "early_stopping", "patience": 2, "delta": 1e-5}, "delta: unknown key"),
    ]:
        with pytest.raises(ValueError, match=message):
            parse_entry(raw)
    with pytest.raises(ValueError, match="dp_sgd on model small_cnn: training: dp does not combine with mixup"):
        dp.apply(ModelConfig(training={"mixup": 0.2}))


def test_a_missing_opacus_is_one_line_before_anything_is_written(
    store: str, monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    monkeypatch.setitem(sys.modules, "opacus", None)  # `import opacus` raises ImportError
    raw = {"name": "dp", "attacks": [{"attack": "fgsm", "norm": "linf", "eps": [0.1], "toolkit": "torchattacks"}],
           "data": {"dataset": "digits", "n_samples": 20}, "defences": ["none", {"kind": "dp_sgd", **DP}]}  # fmt: skip
    with pytest.raises(ScenarioError, match=r"model: training.dp needs Opacus.*pip install 'advbridge\[dp\]'") as info:
        run_scenario(raw, log=lambda _: None)
    assert "\n" not in str(info.value)
    client = mlflow.MlflowClient(store)  # this test's store, whatever tracking URI an earlier test left set
    assert client.search_runs([e.experiment_id for e in client.search_experiments()]) == []


def test_early_stopping_stops_and_keeps_the_best_epoch(digits_train) -> None:
    """A linear model on digits: after the first epoch no later one can beat it by min_delta 0.3, so training stops
    `patience` epochs later (of 50) with the first epoch's weights, the very weights a 1-epoch run ends with."""

    def fit(epochs: int) -> tuple[nn.Module, dict]:
        torch.manual_seed(0)
        net = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
        es = {"patience": 2, "min_delta": 0.3, "validation_fraction": 0.2}
        return net, train(net, digits_train, TrainingConfig(epochs=epochs, lr=0.05, early_stopping=es))

    net, record = fit(50)
    stop = record["early_stopping"]
    assert stop == {**stop, "stopped_epoch": 3, "stopped_early": True, "best_epoch": 1, "validation_samples": 251}
    assert len(record["validation_accuracy_curve"]) == len(record["loss_curve"]) == 3
    assert stop["best_validation_accuracy"] == record["validation_accuracy_curve"][0] > 0.7
    once, _ = fit(1)  # the same split and the same first epoch
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), once.state_dict().values(), strict=True))


@pytest.fixture(scope="module")
def dp_model(model_cache: str, digits_train):
    cfg = ModelConfig(arch="small_cnn", training={**DP_TRAINING, "dp": DP})
    return cfg, *build_model(cfg, digits_train, log=lambda _: None)


def _accuracy(net: nn.Module) -> float:
    test = load_split("digits", "test")
    with torch.no_grad():
        return float((net(test.x).argmax(1) == test.y).float().mean())


@pytest.mark.slow
def test_a_dp_model_is_trained_recorded_and_reloaded(dp_model, digits_train) -> None:
    cfg, net, record = dp_model
    dp = record["dp"]
    assert record["trained"] and dp["replaced_modules"] == [] and dp["accountant"] == "rdp"
    # Epsilon from the training's own accountant: the same as accounted from the configuration alone.
    assert math.isfinite(dp["epsilon"]) and 1 < dp["epsilon"] < 10
    assert dp["epsilon"] == pytest.approx(privacy_spent(cfg.training.dp, len(digits_train), 64, 3)["epsilon"])
    assert {k: dp[k] for k in DP} == DP and dp["steps"] == 60
    accuracy = _accuracy(net)
    assert accuracy > 0.3  # far above chance (0.1) after 3 noisy epochs
    assert not any(hasattr(p, "grad_sample") for p in net.parameters())  # Opacus's traces are gone
    again, reloaded = build_model(cfg, digits_train, log=lambda _: None)
    assert not reloaded["trained"] and reloaded["dp"] == dp and _accuracy(again) == accuracy


@pytest.mark.slow
def test_a_batch_norm_network_trains_privately_and_reloads_with_group_norm(model_cache: str, digits_train) -> None:
    cfg = ModelConfig(arch="resnet18", options={"width": 4}, training={"epochs": 1, "lr": 0.01, "dp": DP})
    net, record = build_model(cfg, digits_train, log=lambda _: None)
    again, reloaded = build_model(cfg, digits_train, log=lambda _: None)
    assert record["trained"] and not reloaded["trained"]
    assert reloaded["dp"]["replaced_modules"] == record["dp"]["replaced_modules"] != []
    assert not any(isinstance(m, nn.BatchNorm2d) for m in again.modules())
    assert any(isinstance(m, nn.GroupNorm) for m in again.modules())
    x = digits_train.x[:16]
    assert torch.equal(net(x), again(x))


@pytest.mark.slow
def test_a_dp_sgd_defence_in_an_evasion_study(store: str, dp_model) -> None:
    _, _, record = dp_model
    raw = {
        "name": "dp", "seed": 0, "device": "cpu", "batch_size": 40,
        "data": {"dataset": "digits", "n_samples": 40},
        "model": {"arch": "small_cnn", "training": DP_TRAINING},
        "attacks": [{"attack": "fgsm", "norm": "linf", "eps": [0.1], "toolkit": "torchattacks"}],
        "defences": ["none", {"kind": "dp_sgd", **DP}],
    }  # fmt: skip
    table = run_scenario(raw, log=lambda _: None)
    assert set(table["model"]) == {"small_cnn", "small_cnn/dp_sgd-1"} and (table["status"] == "ok").all()
    run = mlflow.get_run(table.attrs["parent_run_id"])
    assert run.data.metrics["model.small_cnn/dp_sgd-1.dp_epsilon"] == pytest.approx(record["dp"]["epsilon"])
    assert "model.small_cnn.dp_epsilon" not in run.data.metrics
    stored = mlflow.artifacts.load_dict(f"runs:/{run.info.run_id}/model/small_cnn/dp_sgd-1/record.json")
    assert stored["dp"]["epsilon"] == pytest.approx(record["dp"]["epsilon"])
    assert stored["config"]["training"]["dp"] == DP
