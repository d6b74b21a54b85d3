"""A poisoning study on a Keras victim, recorded in a real MLflow store: the bridge retrains the Keras small CNN on a
pixel-backdoored digits split through the model cache, and ART's Neural Cleanse (Keras models only) finds the
target class by the anomaly index the bridge computes from its reverse-engineered masks; ART's pruning then removes
the backdoor at a cost in clean accuracy, both measured by the bridge from the pruned network's outputs. Also the
traps of ART 1.20.1's Neural Cleanse on Keras 3 that the adapter undoes, each reproduced on ART's own class."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import pytest

from bridge.runner.study import run_scenario
from tests.conftest import TRAINING, module_store

pytestmark = pytest.mark.slow
tf = pytest.importorskip("tensorflow")

SCENARIO = {
    "name": "poisoning-keras",
    "data": {"dataset": "digits", "split": "test"},
    "model": {"arch": "small_cnn", "framework": "keras", "training": TRAINING},
    "poisoning": {
        "attacks": [{"attack": "backdoor", "trigger": "pixel"}, {"attack": "gradient_matching", "fractions": [0.05]}],
        "fractions": [0.1],
        "targets": [0],
        # 30 steps per class on 96 clean samples (3 batches a step): ~25 s on 2 CPU cores, ART's 1000 steps ~15 min
        "defences": [{"defence": "neural_cleanse", "steps": 30, "n_validation": 96}, {"defence": "activation"}],
    },
}


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory, model_cache: str) -> Iterator[tuple[pd.DataFrame, str]]:
    with module_store(tmp_path_factory, "poisoning-keras") as (_, uri):
        yield run_scenario(SCENARIO, log=lambda _: None), uri


def _row(table: pd.DataFrame, attack: str, task: str) -> pd.Series:
    (index,) = table.index[(table["attack"] == attack) & (table["task"] == task)]
    return table.loc[index]


def test_keras_victim_learns_the_backdoor(study: tuple[pd.DataFrame, str]) -> None:
    table, _ = study
    train = _row(table, "backdoor-pixel", "train")
    assert train["model"] == "small_cnn-keras" and train["status"] == "ok" and train["n_poison"] == 126
    assert train["asr"] > 0.85 and train["base_rate"] < 0.05 and train["accuracy_drop"] < 0.04  # 0.905, 0, 0.022
    activation = _row(table, "backdoor-pixel", "detect")  # ART's ActivationDefence on the Keras network's layers
    assert activation["status"] == "ok" and activation["tpr"] > 0.6 and activation["asr_before"] == train["asr"]
    refused = _row(table, "gradient_matching-random", "reference")["status"]
    assert refused == "unsupported: the model is Keras: ART implements GradientMatchingAttack for PyTorch models only"


def test_neural_cleanse_flags_the_target_and_pruning_removes_the_backdoor(study: tuple[pd.DataFrame, str]) -> None:
    from mlflow import MlflowClient

    table, uri = study
    cleanse = _row(table, "backdoor-pixel", "cleanse")
    assert cleanse["status"] == "ok" and cleanse["toolkit"] == "art" and cleanse["defence"] == "neural_cleanse"
    assert cleanse["anomaly_index"] > 10  # measured 21.7: the target's mask is far smaller than the others'
    assert cleanse["flagged_classes"].split()[0] == "0"  # measured "0 2": class 2 flagged too
    assert cleanse["asr_before"] == _row(table, "backdoor-pixel", "train")["asr"]
    assert cleanse["asr"] < 0.05  # measured 0: ART's pruning of 30 % of the last hidden layer removes the backdoor
    assert 0.7 < cleanse["clean_accuracy"] < cleanse["clean_accuracy_before"] - 0.05  # 0.815 from 0.959
    per_class = pd.read_csv(MlflowClient(uri).download_artifacts(cleanse["run_id"], "per_sample.csv"))
    assert len(per_class) == 10 and per_class["mask_l1"].nunique() == 10  # the masks moved: ten searches, ten norms
    assert per_class["mask_l1"].idxmin() == 0
    assert (per_class["flagged"] == per_class["mitigated"]).all()  # the bridge's anomaly rule agrees with ART's


@pytest.fixture(scope="module")
def network() -> Any:
    from bridge.models.keras_zoo import build_keras

    return build_keras("small_cnn", (1, 8, 8), 10, 0.0, {}, seed=0)


def test_art_neural_cleanse_transformer_drops_use_logits(network: Any) -> None:
    """ART's NeuralCleanse transformer builds KerasNeuralCleanse from the model alone: logits taken as probabilities.
    The adapter builds the class itself with use_logits=True."""
    from art.defences.transformer.poisoning import NeuralCleanse
    from art.estimators.classification import KerasClassifier

    classifier = KerasClassifier(model=network, use_logits=True, channels_first=False, clip_values=(0.0, 1.0))
    assert NeuralCleanse(classifier)(classifier, steps=1).use_logits is False


def test_art_reset_zeroes_the_learning_rate_and_the_adapter_sets_it_back(network: Any) -> None:
    """ART's reset zeroes every optimizer variable, Keras 3's learning rate among them, and keeps the previous class's
    mask; the adapter's class sets the rate and the random start back."""
    from art.estimators.poison_mitigation.neural_cleanse import KerasNeuralCleanse

    from adapters.art_poisoning import _neural_cleanse_class

    kwargs = {"model": network, "use_logits": True, "channels_first": False, "clip_values": (0.0, 1.0),
              "learning_rate": 0.1, "batch_size": 4}  # fmt: skip
    x = np.random.default_rng(0).random((4, 8, 8, 1), dtype=np.float32)
    target = [np.eye(10, dtype=np.float32)[0]] * 4
    art, ours = KerasNeuralCleanse(**kwargs), _neural_cleanse_class()(**kwargs)
    for classifier in (art, ours):
        start = classifier.mask_tensor_raw.numpy()
        classifier.train(x, target)  # one step of a search: the mask moves
        assert not np.array_equal(classifier.mask_tensor_raw.numpy(), start)
        classifier.reset()
        if classifier is art:
            assert float(art.opt.learning_rate) == 0.0
            assert not np.array_equal(art.mask_tensor_raw.numpy(), start)
        else:
            assert float(ours.opt.learning_rate) == pytest.approx(0.1)
            assert np.array_equal(ours.mask_tensor_raw.numpy(), start)
