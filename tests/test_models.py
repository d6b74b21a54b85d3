"""Training options, the model cache, bring-your-own models (factory, checkpoint, TorchScript) and normalisation."""

from __future__ import annotations

import importlib
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import torch
from pydantic import ValidationError
from torch import nn

from bridge.core.identity import file_sha256
from bridge.data.dataset import Dataset
from bridge.models.build import build_model, cache_key
from bridge.models.config import ModelConfig
from bridge.models.errors import ModelError
from bridge.models.shared import SharedModel
from bridge.models.sources import Normalized
from bridge.models.training import TrainingConfig, crop_flip, train
from bridge.models.zoo import build


def synthetic(n: int = 64, shape: tuple[int, ...] = (1, 8, 8), seed: int = 0) -> Dataset:
    """Two learnable classes: which half of the image is brighter."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(n, *shape, generator=gen)
    half = shape[-1] // 2
    y = (x[..., :half].mean((1, 2, 3)) > x[..., half:].mean((1, 2, 3))).long()
    return Dataset("synthetic", x, y, n_classes=2)


def quiet(_: str) -> None:
    pass


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("ADVBRIDGE_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "models"


# --- training ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "options",
    [
        {"optimizer": "sgd", "lr": 0.01, "nesterov": True},
        {"optimizer": "adam"},
        {"optimizer": "adamw", "weight_decay": 0.01},
        {"schedule": "cosine"},
        {"schedule": "step", "step_size": 1, "gamma": 0.5},
        {"schedule": "multistep", "milestones": [1]},
        {"label_smoothing": 0.1},
    ],
    ids=lambda o: "-".join(map(str, o.values())),
)
def test_every_optimizer_and_schedule_trains(options: dict) -> None:
    data = synthetic()
    torch.manual_seed(0)
    net = build("small_cnn", data.input_shape, 2)
    result = train(net, data, TrainingConfig(epochs=1, batch_size=16, **options))
    assert set(result) == {"loss_curve", "train_accuracy_curve", "train_time_s"}
    assert len(result["loss_curve"]) == len(result["train_accuracy_curve"]) == 1
    assert 0 <= result["train_accuracy_curve"][0] <= 1 and result["train_time_s"] > 0
    assert not net.training  # left in eval mode, ready for attacks


def test_adam_loss_goes_down_and_training_is_deterministic() -> None:
    data = synthetic(128)
    runs = []
    for _ in range(2):
        torch.manual_seed(0)
        net = build("small_cnn", data.input_shape, 2)
        runs.append((train(net, data, TrainingConfig(epochs=3, batch_size=16)), net.state_dict()))
    curve = runs[0][0]["loss_curve"]
    assert curve[2] < curve[0]
    assert runs[0][0]["loss_curve"] == runs[1][0]["loss_curve"]
    assert all(torch.equal(runs[0][1][k], runs[1][1][k]) for k in runs[0][1])


def test_progress_shows_the_running_loss_on_stderr(capsys: pytest.CaptureFixture) -> None:
    data = synthetic(32)
    train(build("lenet", data.input_shape, 2), data, TrainingConfig(epochs=2, batch_size=16), progress=True)
    captured = capsys.readouterr()
    assert "epoch 2/2" in captured.err and "loss" in captured.err and captured.out == ""


def test_crop_flip_is_a_seeded_shifted_mirrored_crop() -> None:
    x = torch.rand(8, 3, 16, 16)
    a = crop_flip(x, torch.Generator().manual_seed(0))
    assert torch.equal(a, crop_flip(x, torch.Generator().manual_seed(0)))
    assert not torch.equal(a, crop_flip(x, torch.Generator().manual_seed(1)))
    assert not torch.equal(a, x) and a.shape == x.shape
    padded = nn.functional.pad(x, (4, 4, 4, 4))
    for img, out in zip(padded, a, strict=True):  # every output is one crop of the padded image, or its mirror
        crops = [img[:, i : i + 16, j : j + 16] for i in range(9) for j in range(9)]
        assert any(torch.equal(out, c) or torch.equal(out, c.flip(-1)) for c in crops)


def test_crop_flip_changes_training_and_is_refused_on_digits() -> None:
    data = synthetic(32, (3, 16, 16))
    curves = []
    for augment in ["none", "crop_flip"]:
        torch.manual_seed(0)
        cfg = TrainingConfig(epochs=1, batch_size=16, augment=augment)
        curves.append(train(build("small_cnn", data.input_shape, 2), data, cfg)["loss_curve"])
    assert curves[0] != curves[1]
    with pytest.raises(ValueError, match="crop_flip needs inputs of at least 16x16 .*8x8"):
        train(build("small_cnn", (1, 8, 8), 2), synthetic(), TrainingConfig(augment="crop_flip"))


@pytest.mark.parametrize(
    "options,message",
    [
        ({"optimizer": "adam", "momentum": 0.5}, "momentum and nesterov apply to optimizer sgd only"),
        ({"optimizer": "sgd", "momentum": 0, "nesterov": True}, "nesterov needs momentum > 0"),
        ({"schedule": "multistep"}, "multistep needs milestones"),
        ({"milestones": [5]}, "milestones applies to schedule multistep only"),
        ({"schedule": "cosine", "gamma": 0.5}, "gamma applies to schedule step or multistep only"),
        ({"epochs": 0}, "greater than 0"),
        ({"optimiser": "sgd"}, "Extra inputs are not permitted"),
    ],
)
def test_training_config_refuses_inconsistent_options(options: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        TrainingConfig(**options)


# --- the zoo and the cache ---------------------------------------------------------------------------------------


def test_second_build_loads_from_the_cache(cache: Path) -> None:
    data = synthetic()
    cfg = ModelConfig(arch="lenet", training={"epochs": 2, "batch_size": 16})
    logs: list[str] = []
    net, first = build_model(cfg, data, log=logs.append)
    assert first["trained"] and len(first["loss_curve"]) == len(first["train_accuracy_curve"]) == 2
    assert first["train_time_s"] > 0 and logs == [
        f"training lenet on synthetic [{data.fingerprint}] (2 epochs); cached as lenet-{first['hash']}.pt"
    ]
    assert Path(first["checkpoint"]) == cache / f"lenet-{first['hash']}.pt"
    again, second = build_model(cfg, data, log=logs.append)
    assert not second["trained"] and "loss_curve" not in second and len(logs) == 1
    assert (second["hash"], second["checkpoint"], second["sha256"]) == (
        first["hash"],
        first["checkpoint"],
        first["sha256"],
    )
    assert torch.equal(net(data.x), again(data.x)) and not again.training
    assert first["config"]["name"] == "lenet" and first["config"]["training"]["epochs"] == 2


def test_cache_key_follows_weights_not_labels(cache: Path) -> None:
    data = synthetic()
    base = {"arch": "lenet", "training": {"epochs": 1}}
    key = build_model(ModelConfig(**base), data, log=quiet)[1]["hash"]
    assert build_model(ModelConfig(**base, name="renamed"), data, log=quiet)[1]["hash"] == key
    assert build_model(ModelConfig(arch="lenet", training={"epochs": 1, "seed": 1}), data, log=quiet)[1]["hash"] != key
    assert build_model(ModelConfig(**base, dropout=0.2), data, log=quiet)[1]["hash"] != key
    assert build_model(ModelConfig(**base), synthetic(seed=1), log=quiet)[1]["hash"] != key


TINY = {"arch": "lenet", "training": {"epochs": 1, "batch_size": 16}}


def test_checkpoint_bytes_are_set_by_the_weights_alone(cache: Path) -> None:
    data = synthetic()
    first = build_model(ModelConfig(**TINY), data, log=quiet)[1]
    Path(first["checkpoint"]).unlink()
    again = build_model(ModelConfig(**TINY), data, log=quiet)[1]  # trained again, through another temp file
    assert first["trained"] and again["trained"]
    assert first["sha256"] == again["sha256"] == file_sha256(Path(again["checkpoint"]))


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def other_weights(path: Path) -> None:
    torch.save({"weight": torch.zeros(3)}, path)


@pytest.mark.parametrize(
    ("damage", "why"),
    [(truncate, ""), (lambda p: p.write_bytes(b"not a zip"), ""),
     (other_weights, "ValueError: its tensors are not those of this model")],
    ids=["truncated", "not-a-zip", "other-weights"],
)  # fmt: skip
def test_a_damaged_cache_file_is_reported_in_one_line_deleted_and_retrained(cache: Path, damage, why: str) -> None:
    data = synthetic()
    net, first = build_model(ModelConfig(**TINY), data, log=quiet)
    weights = Path(first["checkpoint"])
    damage(weights)
    logs: list[str] = []
    again, second = build_model(ModelConfig(**TINY), data, log=logs.append)
    assert len(logs) == 2 and logs[1].startswith("training lenet on synthetic")
    assert logs[0].startswith(f"model cache file {weights} fails to load ({why}") and "\n" not in logs[0]
    assert logs[0].endswith("): deleted, training it again")
    assert second["trained"] and second["sha256"] == first["sha256"] == file_sha256(weights)
    assert torch.equal(again(data.x), net(data.x))  # trained from the seeded start, not from the damaged file
    assert not build_model(ModelConfig(**TINY), data, log=logs.append)[1]["trained"] and len(logs) == 2


def test_a_damaged_keras_cache_file_is_reported_deleted_and_retrained(cache: Path) -> None:
    pytest.importorskip("tensorflow")
    data = synthetic()
    cfg = {"framework": "keras", "arch": "small_cnn", "training": {"epochs": 1, "batch_size": 32}}
    weights = Path(build_model(ModelConfig(**cfg), data, log=quiet)[1]["checkpoint"])
    truncate(weights)
    logs: list[str] = []
    record = build_model(ModelConfig(**cfg), data, log=logs.append)[1]
    assert len(logs) == 2 and logs[0].startswith(f"model cache file {weights} fails to load (ModelError: ")
    assert record["trained"] and record["sha256"] == file_sha256(weights)
    assert sorted(p.name for p in cache.iterdir()) == [weights.name, f"{weights.name}.lock"]


def test_an_interrupted_write_leaves_nothing_in_the_cache(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted(obj: object, f: Any, *args: Any, **kwargs: Any) -> None:
        f.write(b"PK\x03\x04 half an archive")
        raise KeyboardInterrupt

    data = synthetic()
    with monkeypatch.context() as patch:
        patch.setattr(torch, "save", interrupted)
        with pytest.raises(KeyboardInterrupt):
            build_model(ModelConfig(**TINY), data, log=quiet)
    assert [p.suffix for p in cache.iterdir()] == [".lock"]
    assert build_model(ModelConfig(**TINY), data, log=quiet)[1]["trained"]


def test_a_file_left_by_a_killed_writer_is_removed_by_the_next_trainer(cache: Path) -> None:
    data = synthetic()
    weights = cache / f"lenet-{cache_key(ModelConfig(**TINY), data)}.pt"
    cache.mkdir(parents=True)
    left = weights.with_name(f"{weights.stem}.999999.tmp.pt")  # what SIGKILL (or SIGTERM) in mid-write leaves
    left.write_bytes(b"half")
    assert build_model(ModelConfig(**TINY), data, log=quiet)[1]["checkpoint"] == str(weights)
    assert sorted(p.name for p in cache.iterdir()) == [weights.name, f"{weights.name}.lock"]


def test_arch_with_a_checkpoint_loads_it_without_training(cache: Path, tmp_path: Path) -> None:
    data = synthetic()
    torch.manual_seed(3)
    net = build("densenet", data.input_shape, 2, options={"growth_rate": 4, "blocks": [2]}).eval()
    torch.save(net.state_dict(), tmp_path / "dense.pt")
    cfg = ModelConfig(arch="densenet", options={"growth_rate": 4, "blocks": [2]}, checkpoint=tmp_path / "dense.pt")
    model, record = build_model(cfg, data, log=quiet)
    assert not record["trained"] and record["checkpoint"] == str(tmp_path / "dense.pt") and not cache.exists()
    assert torch.equal(model(data.x), net(data.x))


@pytest.mark.parametrize(
    "fields,message",
    [
        (
            {"arch": "lenet", "torchscript": "m.pt"},
            "exactly one of arch, factory, torchscript, mlflow, keras; got arch and torchscript",
        ),
        ({"factory": "m:f", "options": {"width": 2}}, "options does not apply to a factory model"),
        ({"factory": "m:f", "training": {"epochs": 1}}, "training does not apply to a factory model"),
        (
            {"arch": "lenet", "checkpoint": "w.pt", "training": {}},
            "training does not apply to an arch with a checkpoint",
        ),
        ({"torchscript": "m.pt", "checkpoint": "w.pt"}, "checkpoint does not apply to a torchscript model"),
        ({"arch": "lenet", "factory_kwargs": {"a": 1}}, "factory_kwargs does not apply"),
        ({"arch": "lenet", "options": {"depth": 3}}, "lenet has no option depth; its options: none"),
        ({"arch": "vgg"}, "Input should be 'small_cnn'"),
        ({"factory": "not a spec"}, "String should match pattern"),
        ({"normalize": {"mean": [0.5], "std": [0.5, 0.5]}}, "mean has 1 values but std has 2"),
        ({"normalize": {"mean": [0.5], "std": [0.0]}}, "greater than 0"),
        ({"arch": "lenet", "epochs": 3}, "Extra inputs are not permitted"),
    ],
)
def test_model_config_refuses_what_cannot_apply(fields: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        ModelConfig(**fields)


def test_model_config_defaults_and_names() -> None:
    assert ModelConfig().arch == "small_cnn" and ModelConfig().name == "small_cnn"
    assert ModelConfig(factory="pkg.models:wrn").name == "wrn"
    assert ModelConfig(torchscript="exported/robust.pt").name == "robust"
    assert ModelConfig(arch="resnet18", name="mine").name == "mine"
    assert ModelConfig(arch="densenet", options={"blocks": [2, 2]}).options == {"blocks": (2, 2)}


# --- bring your own -----------------------------------------------------------------------------------------------

FACTORY = """
from torch import nn

def make(n_classes=2, hidden=16):
    return nn.Sequential(nn.Flatten(), nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, n_classes))

def broken():
    raise RuntimeError("no weights\\nsecond line")

def not_a_module():
    return 42

NOT_CALLABLE = 3
"""


@pytest.fixture
def factory_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A module of model factories written to disk, importable as `byo_factories`."""
    (tmp_path / "byo_factories.py").write_text(textwrap.dedent(FACTORY))
    (tmp_path / "byo_broken.py").write_text("import not_installed_package\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in ("byo_factories", "byo_broken"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    return "byo_factories"


def test_factory_with_a_checkpoint(factory_module: str, tmp_path: Path) -> None:
    data = synthetic()
    torch.manual_seed(7)
    reference = importlib.import_module(factory_module).make(hidden=8).eval()
    torch.save(reference.state_dict(), tmp_path / "weights.pt")
    cfg = ModelConfig(factory="byo_factories:make", factory_kwargs={"hidden": 8}, checkpoint=tmp_path / "weights.pt")
    model, record = build_model(cfg, data, log=quiet)
    assert torch.equal(model(data.x), reference(data.x)) and not model.training
    assert not record["trained"] and record["checkpoint"] == str(tmp_path / "weights.pt") and record["sha256"]
    assert build_model(ModelConfig(factory="byo_factories:make"), data, log=quiet)[1]["checkpoint"] is None


@pytest.mark.parametrize(
    "factory,message",
    [
        ("byo_missing:make", "factory byo_missing:make: module byo_missing not found"),
        (
            "byo_broken:make",
            "importing byo_broken failed: ModuleNotFoundError: No module named 'not_installed_package'",
        ),
        ("byo_factories:absent", "module byo_factories has no absent"),
        ("byo_factories:NOT_CALLABLE", "NOT_CALLABLE is a int, not callable"),
        ("byo_factories:broken", "factory byo_factories:broken failed: RuntimeError: no weights$"),
        ("byo_factories:not_a_module", "returned a int, not a torch.nn.Module"),
    ],
)
def test_factory_errors_are_one_line(factory_module: str, factory: str, message: str) -> None:
    with pytest.raises(ModelError, match=message) as err:
        build_model(ModelConfig(factory=factory), synthetic(), log=quiet)
    assert "\n" not in str(err.value)


def test_checkpoint_errors_are_one_line(factory_module: str, tmp_path: Path) -> None:
    data = synthetic()
    torch.save(nn.Linear(64, 2).state_dict(), tmp_path / "other.pt")
    torch.save(nn.Linear(64, 2), tmp_path / "pickled.pt")
    torch.save([1, 2], tmp_path / "list.pt")
    cases = {
        "absent.pt": "checkpoint .*absent.pt not found",
        "other.pt": "does not match the model: missing 1.weight, 1.bias, 3.weight .\\+1 more.; unexpected weight, bias",
        "pickled.pt": "holds pickled objects, not a plain state dict: save it with torch.save",
        "list.pt": "holds a list, not a state dict: save it with torch.save.model.state_dict.., path.",
    }
    for name, message in cases.items():
        cfg = ModelConfig(factory="byo_factories:make", checkpoint=tmp_path / name)
        with pytest.raises(ModelError, match=message) as err:
            build_model(cfg, data, log=quiet)
        assert "\n" not in str(err.value)
    torch.save(nn.Sequential(nn.Flatten(), nn.Linear(64, 4)).state_dict(), tmp_path / "wide.pt")
    cfg = ModelConfig(factory="byo_factories:make", factory_kwargs={"hidden": 8}, checkpoint=tmp_path / "wide.pt")
    with pytest.raises(ModelError, match="shape mismatch 1.weight \\(4, 64\\) vs \\(8, 64\\), 1.bias"):
        build_model(cfg, data, log=quiet)


def test_model_with_wrong_outputs_is_refused(factory_module: str) -> None:
    with pytest.raises(
        ModelError, match="returns \\(2, 5\\) for inputs of shape \\(2, 1, 8, 8\\); expected .*\\(2, 2\\)"
    ):
        build_model(ModelConfig(factory="byo_factories:make", factory_kwargs={"n_classes": 5}), synthetic(), log=quiet)


@pytest.mark.parametrize("export", ["script", "trace"])
def test_torchscript_model_is_counted_like_any_other(tmp_path: Path, export: str) -> None:
    data = synthetic()
    torch.manual_seed(0)
    net = build("small_cnn", data.input_shape, 2).eval()
    exported = torch.jit.script(net) if export == "script" else torch.jit.trace(net, data.x[:2])
    exported.save(str(tmp_path / "model.pt"))
    model, record = build_model(ModelConfig(torchscript=tmp_path / "model.pt"), data, log=quiet)
    assert torch.allclose(model(data.x), net(data.x)) and record["checkpoint"] == str(tmp_path / "model.pt")
    shared = SharedModel(model, data.input_shape, 2)  # ScriptModules refuse hooks: the wrapper takes them
    with shared.counting() as counters:
        shared(data.x[:4])
    assert counters.forward_samples == 4


def test_torchscript_errors_are_one_line(tmp_path: Path) -> None:
    (tmp_path / "junk.pt").write_bytes(b"not a zip archive")
    for name, message in {
        "absent.pt": "torchscript file .*absent.pt not found",
        "junk.pt": "could not be loaded",
    }.items():
        with pytest.raises(ModelError, match=message) as err:
            build_model(ModelConfig(torchscript=tmp_path / name), synthetic(), log=quiet)
        assert "\n" not in str(err.value)


# --- normalisation -----------------------------------------------------------------------------------------------


def test_normalization_is_folded_into_the_model(cache: Path) -> None:
    data = synthetic(32, (3, 16, 16))
    mean, std = [0.4914, 0.4822, 0.4465], [0.2470, 0.2435, 0.2616]
    cfg = ModelConfig(arch="lenet", normalize={"mean": mean, "std": std}, training={"epochs": 1})
    model, record = build_model(cfg, data, log=quiet)
    assert isinstance(model, Normalized) and not isinstance(model, nn.Sequential) and record["trained"]
    x = data.x[:4]
    expected = model.net((x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1))
    assert torch.allclose(model(x), expected)
    assert build_model(cfg, data, log=quiet)[1]["trained"] is False  # cached like any zoo model
    assert build_model(cfg.model_copy(update={"normalize": None}), data, log=quiet)[1]["hash"] != record["hash"]
    with pytest.raises(ModelError, match="normalize has 3 channel\\(s\\) but the inputs have 1"):
        build_model(cfg, synthetic(), log=quiet)
