"""Models logged to MLflow: loaded without running code from their files (TorchScript, or a state dict for a
factory or zoo network); a pickled module or a torch.export archive only with `trust_pickle: true`.

The crafted models below would write a marker file if anything unpickled (or evaluated) them; the marker must
never appear. `test_the_crafted_payloads_are_live` shows that each payload does run when loaded the unsafe way.
"""

from __future__ import annotations

import importlib
import io
import json
import re
import shutil
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import mlflow
import mlflow.pytorch
import pytest
import torch
import yaml
from crafted import PAYLOAD_TEXT, Payload
from mlflow.tracking._tracking_service.utils import _use_tracking_uri
from pydantic import ValidationError

from bridge.data.dataset import Dataset
from bridge.engine.tracking import client
from bridge.models.build import build_model, model_identity
from bridge.models.config import ModelConfig
from bridge.models.errors import ModelError
from bridge.models.sources import Exported, Scripted, load_mlflow
from bridge.models.zoo import build

FACTORY = """
from torch import nn

def make(n_classes=2, hidden=16):
    return nn.Sequential(nn.Flatten(), nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, n_classes))
"""


def pickled_payload(marker: Path) -> bytes:
    buffer = io.BytesIO()
    torch.save(Payload(marker), buffer)
    return buffer.getvalue()


def pt2_with_payload(archive: Path, marker: Path, out: Path) -> None:
    """`archive` (a torch.export pt2 file) with a symbolic shape expression that writes `marker` when the archive
    is loaded: torch.export.load parses these expressions with sympy.sympify, which evaluates them."""
    import zipfile

    with zipfile.ZipFile(archive) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename.endswith("models/model.json"):
                text = data.decode()
                expr = re.search(r'"expr_str": "([^"]+)"', text).group(1)
                write = f"__import__('pathlib').Path({str(marker)!r}).write_text({PAYLOAD_TEXT!r})"
                payload = f"{expr} if {write} else {expr}"
                data = text.replace(f'"{expr}"', json.dumps(payload)).encode()
            dst.writestr(info, data)


def dataset(n: int = 32, seed: int = 0) -> Dataset:
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, 8, 8, generator=gen)
    y = (x[..., :4].mean((1, 2, 3)) > x[..., 4:].mean((1, 2, 3))).long()
    return Dataset("synthetic", x, y, n_classes=2)


def quiet(_: str) -> None:
    pass


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimpleNamespace]:
    """One sqlite store holding every model the tests load, benign and crafted, and the factory module."""
    root = tmp_path_factory.mktemp("mlflow-models")
    (root / "mlflow_byo_nets.py").write_text(textwrap.dedent(FACTORY))
    mp = pytest.MonkeyPatch()
    mp.syspath_prepend(str(root))
    mp.delitem(sys.modules, "mlflow_byo_nets", raising=False)
    uri = f"sqlite:///{root / 'mlflow.db'}"
    mp.setenv("MLFLOW_TRACKING_URI", uri)  # _use_tracking_uri sets it, and unsets it on leaving: undo restores it
    client(uri)
    torch.manual_seed(7)
    net = importlib.import_module("mlflow_byo_nets").make(hidden=8).eval()
    zoo_net = build("small_cnn", (1, 8, 8), 2).eval()
    markers = root / "markers"
    markers.mkdir()
    saved = root / "saved"
    pip = ["torch"]
    with _use_tracking_uri(uri):
        experiment = mlflow.create_experiment("models", artifact_location=(root / "artifacts").as_uri())
        with mlflow.start_run(experiment_id=experiment) as run:
            pickled = mlflow.pytorch.log_model(net, name="pickled", serialization_format="pickle", pip_requirements=pip)
            scripted = mlflow.pytorch.log_model(
                torch.jit.script(net), name="scripted", serialization_format="pickle", pip_requirements=pip
            )
            mlflow.pytorch.log_state_dict(net.state_dict(), "weights")
            mlflow.pytorch.log_state_dict(zoo_net.state_dict(), "zoo_weights")
            torch.save(net.state_dict(), root / "weights.pt")
            mlflow.log_artifact(str(root / "weights.pt"), "files")

            mlflow.pytorch.save_model(net, saved / "evil", serialization_format="pickle", pip_requirements=pip)
            (saved / "evil" / "data" / "model.pth").write_bytes(pickled_payload(markers / "pickle"))
            mlflow.log_artifacts(str(saved / "evil"), "evil")

            (saved / "evil_sd").mkdir()
            (saved / "evil_sd" / "state_dict.pth").write_bytes(pickled_payload(markers / "state_dict"))
            mlflow.log_artifacts(str(saved / "evil_sd"), "evil_sd")

            example = dataset(4).x.numpy()
            mlflow.pytorch.save_model(net, saved / "pt2", input_example=example, pip_requirements=pip)
            mlflow.log_artifacts(str(saved / "pt2"), "pt2")
            shutil.copytree(saved / "pt2", saved / "evil_pt2")
            archive = saved / "evil_pt2" / "data" / "model.pt2"
            pt2_with_payload(saved / "pt2" / "data" / "model.pt2", markers / "pt2", archive)
            mlflow.log_artifacts(str(saved / "evil_pt2"), "evil_pt2")

            shutil.copytree(saved / "evil", saved / "not_torch")
            meta = yaml.safe_load((saved / "not_torch" / "MLmodel").read_text())
            del meta["flavors"]["pytorch"]
            (saved / "not_torch" / "MLmodel").write_text(yaml.safe_dump(meta))
            mlflow.log_artifacts(str(saved / "not_torch"), "not_torch")
        mlflow.register_model(pickled.model_uri, "victim")
        mlflow.register_model(f"runs:/{run.info.run_id}/evil", "evil")
    yield SimpleNamespace(
        uri=uri,
        run=f"runs:/{run.info.run_id}",
        pickled=pickled.model_uri,
        scripted=scripted.model_uri,
        net=net,
        zoo_net=zoo_net,
        root=root,
        markers=markers,
    )
    mp.undo()


@pytest.fixture(autouse=True)
def tracking(registry: SimpleNamespace, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The registry's store is the one in force, as a scenario's is when its models are built."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", registry.uri)
    with _use_tracking_uri(registry.uri):
        yield


def built(cfg: ModelConfig) -> tuple[torch.nn.Module, dict]:
    return build_model(cfg, dataset(), log=quiet)


def refused(cfg: ModelConfig, message: str) -> str:
    with pytest.raises(ModelError, match=message) as err:
        built(cfg)
    assert "\n" not in str(err.value)
    return str(err.value)


def same_logits(model: torch.nn.Module, reference: torch.nn.Module) -> None:
    x = dataset().x
    with torch.no_grad():
        assert torch.allclose(model(x), reference(x), atol=1e-6)


# --- crafted models never run ------------------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["models:/evil/1", "models:/evil/latest", "run"])
def test_a_crafted_pickled_model_is_refused_and_never_runs(registry: SimpleNamespace, where: str) -> None:
    uri = f"{registry.run}/evil" if where == "run" else where
    message = refused(ModelConfig(mlflow=uri), f"mlflow model {uri} is a pickled PyTorch module: loading it unpickles")
    assert "mlflow.pytorch.log_state_dict" in message and "TorchScript" in message and "trust_pickle: true" in message
    with pytest.raises(ModelError, match="pickled PyTorch module"):
        load_mlflow(uri)
    assert not (registry.markers / "pickle").exists()


def test_a_crafted_state_dict_is_refused_and_never_runs(registry: SimpleNamespace) -> None:
    cfg = ModelConfig(mlflow=f"{registry.run}/evil_sd", factory="mlflow_byo_nets:make", factory_kwargs={"hidden": 8})
    refused(cfg, "evil_sd holds pickled objects, not a plain state dict: log it with mlflow.pytorch.log_state_dict")
    assert not (registry.markers / "state_dict").exists()


def test_a_crafted_pt2_model_is_refused_and_never_runs(registry: SimpleNamespace) -> None:
    uri = f"{registry.run}/evil_pt2"
    message = refused(ModelConfig(mlflow=uri), f"mlflow model {uri} is a torch.export .pt2. archive")
    assert "trust_pickle: true" in message
    assert not (registry.markers / "pt2").exists()


def test_the_crafted_payloads_are_live(registry: SimpleNamespace, tmp_path: Path) -> None:
    """The payloads above do run code when loaded the unsafe way (so the tests above test something)."""
    torch.load(io.BytesIO(pickled_payload(tmp_path / "pickled")), weights_only=False)
    pt2 = tmp_path / "model.pt2"
    pt2_with_payload(registry.root / "saved" / "pt2" / "data" / "model.pt2", tmp_path / "exported", pt2)
    torch.export.load(str(pt2))
    assert (tmp_path / "pickled").read_text() == PAYLOAD_TEXT == (tmp_path / "exported").read_text()


# --- what loads ---------------------------------------------------------------------------------------------------


def test_a_pickled_model_loads_only_with_trust_pickle(registry: SimpleNamespace) -> None:
    for uri in (registry.pickled, "models:/victim/1"):
        refused(ModelConfig(mlflow=uri), "is a pickled PyTorch module")
        model, record = built(ModelConfig(mlflow=uri, trust_pickle=True))
        same_logits(model, registry.net)
        assert not record["trained"] and record["checkpoint"] is None and not model.training


def test_a_pt2_model_loads_only_with_trust_pickle(registry: SimpleNamespace) -> None:
    uri = f"{registry.run}/pt2"
    refused(ModelConfig(mlflow=uri), "torch.export .pt2. archive")
    model, _ = built(ModelConfig(mlflow=uri, trust_pickle=True))
    assert isinstance(model, Exported) and not model.training  # eval() stops at the wrapper
    same_logits(model, registry.net)


def test_a_torchscript_model_loads_without_trust(registry: SimpleNamespace) -> None:
    model, record = built(ModelConfig(mlflow=registry.scripted))
    assert isinstance(model, Scripted) and not record["trained"]
    same_logits(model, registry.net)


@pytest.mark.parametrize("path", ["weights", "files/weights.pt"])
def test_a_state_dict_loads_into_a_factory_network(registry: SimpleNamespace, path: str) -> None:
    cfg = ModelConfig(mlflow=f"{registry.run}/{path}", factory="mlflow_byo_nets:make", factory_kwargs={"hidden": 8})
    assert not cfg.trained_here
    model, record = built(cfg)
    same_logits(model, registry.net)
    assert not record["trained"] and record["hash"] == model_identity(cfg, dataset())


def test_a_state_dict_loads_into_a_zoo_network_not_trained_here(
    registry: SimpleNamespace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ADVBRIDGE_CACHE", str(tmp_path / "cache"))
    cfg = ModelConfig(mlflow=f"{registry.run}/zoo_weights", arch="small_cnn")
    assert not cfg.trained_here and cfg.name == "zoo_weights"
    model, record = built(cfg)
    same_logits(model, registry.zoo_net)
    assert not record["trained"] and not (tmp_path / "cache").exists()
    assert record["hash"] == model_identity(cfg, dataset())


def test_trust_pickle_leaves_the_identity_as_it_was(registry: SimpleNamespace) -> None:
    trusted = ModelConfig(mlflow=registry.pickled, trust_pickle=True)
    assert model_identity(trusted, dataset()) == model_identity(ModelConfig(mlflow=registry.pickled), dataset())
    assert built(trusted)[1]["hash"] == model_identity(trusted, dataset())


# --- one-line errors ----------------------------------------------------------------------------------------------


def test_mlflow_errors_are_one_line(registry: SimpleNamespace) -> None:
    factory = {"factory": "mlflow_byo_nets:make", "factory_kwargs": {"hidden": 8}}
    cases = [
        ({"mlflow": "models:/no-such-model/1"}, "mlflow model models:/no-such-model/1 could not be loaded: "),
        ({"mlflow": f"{registry.run}/nothing"}, "nothing could not be loaded: MlflowException: Failed to download"),
        ({"mlflow": "runs:/0123456789abcdef/model"}, "could not be loaded: MlflowException: Run .* not found"),
        ({"mlflow": f"{registry.run}/weights"}, "weights is a state dict: give the network .* with factory or arch"),
        ({"mlflow": f"{registry.run}/files"}, "files is not an MLflow model .it has no MLmodel file."),
        ({"mlflow": f"{registry.run}/files/weights.pt"}, "weights.pt is a file, not an MLflow model"),
        ({"mlflow": f"{registry.run}/not_torch"}, "not_torch is not a PyTorch model .its flavors: python_function."),
        ({"mlflow": registry.pickled, **factory}, "is a whole model, not a state dict: factory and arch take"),
        ({"mlflow": f"{registry.run}/files", **factory}, "files holds no state dict .state_dict.pth."),
        (
            {"mlflow": f"{registry.run}/weights", "factory": "mlflow_byo_nets:make"},
            "weights does not match the model: shape mismatch 1.weight .8, 64. vs .16, 64.",
        ),
    ]
    for fields, message in cases:
        refused(ModelConfig(**fields), message)
    assert not any(registry.markers.iterdir())


@pytest.mark.parametrize(
    "fields,message",
    [
        ({"arch": "lenet", "trust_pickle": True}, "trust_pickle does not apply to an arch"),
        ({"factory": "m:f", "trust_pickle": False}, "trust_pickle does not apply to a factory model"),
        ({"torchscript": "m.pt", "trust_pickle": True}, "trust_pickle does not apply to a torchscript model"),
        (
            {"mlflow": "runs:/r/w", "arch": "lenet", "trust_pickle": True},
            "trust_pickle does not apply to MLflow weights loaded into an arch",
        ),
        (
            {"mlflow": "runs:/r/w", "factory": "m:f", "trust_pickle": True},
            "trust_pickle does not apply to MLflow weights loaded into a factory model",
        ),
        ({"mlflow": "runs:/r/w", "arch": "lenet", "training": {"epochs": 1}}, "training does not apply to MLflow"),
        ({"mlflow": "runs:/r/w", "factory": "m:f", "checkpoint": "w.pt"}, "checkpoint does not apply to MLflow"),
        ({"mlflow": "runs:/r/w", "torchscript": "m.pt"}, "got torchscript and mlflow .mlflow may also go with arch"),
        ({"mlflow": "runs:/r/w", "arch": "lenet", "factory": "m:f"}, "got arch and factory and mlflow"),
        ({"mlflow": "runs:/r/w", "arch": "lenet", "framework": "keras"}, "framework keras takes arch or keras"),
    ],
)
def test_model_config_mlflow_rules(fields: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        ModelConfig(**fields)


def test_model_config_accepts_mlflow_weights_with_a_network() -> None:
    with_arch = ModelConfig(mlflow="runs:/r/weights", arch="lenet", options={}, dropout=0.1)
    with_factory = ModelConfig(mlflow="models:/w/2", factory="m:f", factory_kwargs={"a": 1})
    assert not with_arch.trained_here and not with_factory.trained_here
    assert ModelConfig(mlflow="models:/w/2", trust_pickle=True).trust_pickle
    assert not ModelConfig(mlflow="models:/w/2").trust_pickle
