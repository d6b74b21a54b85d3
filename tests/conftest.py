"""Shared fixtures: a trained digits CNN (trained once per test session into a temp cache), real data."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import art  # noqa: F401  (first: see below)
import pytest
import torch

from bridge.data.dataset import load_split, select
from bridge.models.build import build_model
from bridge.models.config import ModelConfig
from bridge.models.shared import SharedModel

# ART configures logging when imported (logging.config.dictConfig), closing the handlers that exist. Imported after
# TensorFlow, that closes absl's handler, whose stream is pytest's capture of the moment: every later test then fails
# reading its capture. (A real process is unaffected: absl never closes the sys.stderr in force.)

TRAINING = {"epochs": 20, "lr": 1e-3, "batch_size": 64, "seed": 0}


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("advbridge-cache")
    mp = pytest.MonkeyPatch()
    mp.setenv("ADVBRIDGE_CACHE", str(path))
    yield str(path)
    mp.undo()


@pytest.fixture(scope="session")
def digits_model(model_cache: str) -> SharedModel:
    """The quickstart's small CNN, trained on the digits train split (about 97% test accuracy)."""
    train = load_split("digits", "train")
    net, _ = build_model(ModelConfig(arch="small_cnn", training=TRAINING), train, log=lambda _: None)
    return SharedModel(net, train.input_shape, train.n_classes, device="cpu", name="small_cnn")


@pytest.fixture(scope="session")
def digits_batch() -> tuple[torch.Tensor, torch.Tensor]:
    """64 real test images in [0,1] with their labels."""
    data = select(load_split("digits", "test"), 64, seed=0)
    return data.x, data.y


@pytest.fixture
def store(tmp_path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A real, empty MLflow sqlite store in a temp dir, selected the way users select one (the env var)."""
    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return uri


def write_scenario(tmp_path, text: str, name: str = "scenario.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


@contextmanager
def module_store(tmp_path_factory: pytest.TempPathFactory, name: str) -> Iterator[tuple[Path, str]]:
    """A fresh folder and a real sqlite store in it, selected through the env var for as long as the block lasts
    (module-scoped fixtures that run one study and let many tests read it)."""
    tmp = tmp_path_factory.mktemp(name)
    uri = f"sqlite:///{tmp / 'store' / 'mlflow.db'}"
    mp = pytest.MonkeyPatch()
    mp.setenv("MLFLOW_TRACKING_URI", uri)
    try:
        yield tmp, uri
    finally:
        mp.undo()
