"""Keras models: the zoo's Keras architectures, their training and cache, .keras files, and the ART and Foolbox
TensorFlow paths measured by the bridge exactly as for PyTorch (torchattacks refuses them, with the reason)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

from bridge.attacks.adapter import Unsupported, get_adapter
from bridge.attacks.spec import resolve_attack
from bridge.data.dataset import load_split, select
from bridge.models.build import build_model
from bridge.models.config import ModelConfig
from bridge.models.errors import ModelError
from bridge.models.keras import KerasModel
from bridge.runner.study import run_scenario
from bridge.scenario.load import ScenarioError, load_raw
from tests.conftest import TRAINING
from tests.test_parity import adversarial

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")


@pytest.fixture(scope="module")
def keras_model(model_cache: str) -> KerasModel:
    """The Keras small CNN trained by the bridge on the digits train split."""
    train = load_split("digits", "train")
    net, record = build_model(ModelConfig(framework="keras", arch="small_cnn", training=TRAINING), train, log=print)
    model = KerasModel(net, train.input_shape, train.n_classes, (0.0, 1.0), "cpu", "small_cnn-keras")
    model.record = record
    return model


@pytest.mark.parametrize("arch", ["small_cnn", "resnet18"])
@pytest.mark.parametrize(("shape", "classes"), [((1, 8, 8), 10), ((3, 32, 32), 100)])
def test_keras_zoo_forward_and_backward(arch: str, shape: tuple, classes: int) -> None:
    from bridge.models.keras_zoo import build_keras

    net = build_keras(arch, shape, classes, 0.0, {"width": 8} if arch == "resnet18" else {})
    model = KerasModel(net, shape, classes, (0.0, 1.0), "cpu", arch)
    x = torch.rand(4, *shape)
    assert model.predict(x).shape == (4, classes)
    grad = model.loss_gradient(x, torch.zeros(4, dtype=torch.int64), "margin")
    assert grad.shape == x.shape and float(grad.abs().sum()) > 0


@pytest.mark.parametrize("loss", ["ce", "margin", "dlr"])
def test_keras_loss_gradient_is_the_losss_slope(keras_model: KerasModel, loss: str) -> None:
    """Each attack loss's input gradient, checked against central differences of that loss on the model's own
    logits along the coordinates where it is largest."""
    from bridge.models.shared import attack_loss

    data = select(load_split("digits", "test"), 4, seed=0)
    grad = keras_model.loss_gradient(data.x, data.y, loss)
    assert grad.shape == data.x.shape

    def total(x: torch.Tensor) -> float:
        return float(attack_loss(keras_model.predict(x).double(), data.y, loss).sum())

    h = 1e-3
    for index in grad.flatten().abs().argsort(descending=True)[:5].tolist():
        step = torch.zeros(data.x.numel())
        step[index] = h
        step = step.view_as(data.x)
        slope = (total(data.x + step) - total(data.x - step)) / (2 * h)
        assert slope == pytest.approx(float(grad.flatten()[index]), rel=0.05, abs=1e-3)


def test_saturated_keras_logits_trip_the_gradient_check_on_the_cross_entropy(keras_model: KerasModel) -> None:
    """As for PyTorch (test_checks): logits x 1e4 zero the cross-entropy's gradient, not the margin's."""
    from bridge.studies.evasion.checks import gradients_available

    data = select(load_split("digits", "test"), 64, seed=0)
    clean = keras_model.predict(data.x).argmax(1)
    assert gradients_available(keras_model, data.x, data.y, clean).status == "passed"
    saturated = keras.Sequential([keras_model.net, keras.layers.Rescaling(1e4)])
    model = KerasModel(saturated, keras_model.input_shape, 10, (0.0, 1.0), "cpu", "saturated")
    check = gradients_available(model, data.x, data.y, model.predict(data.x).argmax(1))
    assert check.status == "failed" and "attacks on the ce loss are blind" in check.detail
    assert check.detail.startswith("ce: 100%, margin: 0%, dlr: 0% of ")


def test_trained_keras_model_is_accurate_and_cached(keras_model: KerasModel) -> None:
    test = load_split("digits", "test")
    accuracy = float((keras_model.predict(test.x).argmax(1) == test.y).float().mean())
    assert accuracy > 0.93, accuracy
    record = keras_model.record
    assert record["checkpoint"].endswith(".keras") and len(record["sha256"]) == 64
    net, again = build_model(ModelConfig(framework="keras", arch="small_cnn", training=TRAINING),
                             load_split("digits", "train"), log=print)  # fmt: skip
    assert not again["trained"] and again["sha256"] == record["sha256"] and again["hash"] == record["hash"]
    torch_key = ModelConfig(arch="small_cnn", training=TRAINING)
    assert build_model(torch_key, load_split("digits", "train"), log=print)[1]["hash"] != record["hash"]


PARITY = [
    {"attack": "fgsm", "norm": "linf", "eps": 0.1},
    {"attack": "pgd", "norm": "linf", "eps": 0.15, "steps": 10, "step_size": 0.03, "random_start": False},
    {"attack": "pgd", "norm": "linf", "eps": 0.15, "steps": 10, "step_size": 0.03, "random_start": False,
     "targeted": "least_likely"},
]  # fmt: skip


@pytest.mark.parametrize("fields", PARITY, ids=lambda f: f"{f['attack']}-{f.get('targeted', 'untargeted')}")
def test_art_and_foolbox_give_the_same_examples_on_a_keras_model(keras_model: KerasModel, digits_batch, fields):
    x, y = digits_batch
    art = adversarial(fields, "art", keras_model, x, y)
    foolbox = adversarial(fields, "foolbox", keras_model, x, y)
    assert float((art - foolbox).abs().max()) <= 1e-6
    assert float((art - x).abs().max()) <= fields["eps"] + 1e-6
    clean = float((keras_model.predict(x).argmax(1) == y).float().mean())
    robust = float((keras_model.predict(art).argmax(1) == y).float().mean())
    assert robust < clean - (0.3 if "targeted" not in fields else 0.05), (clean, robust)


@pytest.mark.parametrize("toolkit", ["art", "foolbox"])
def test_counters_see_every_pass_of_a_tensorflow_toolkit(keras_model: KerasModel, digits_batch, toolkit: str) -> None:
    x, y = digits_batch
    fields = {"attack": "pgd", "norm": "linf", "eps": 0.1, "steps": 7, "step_size": 0.02, "random_start": False}
    with keras_model.counting() as counters:
        adversarial(fields, toolkit, keras_model, x, y)
    assert counters.backward_calls == 7 * 2  # seven steps on two batches of 32
    assert counters.backward_samples == 7 * len(x)
    assert counters.forward_samples >= 7 * len(x)


def test_query_budget_holds_for_art_square_on_keras(keras_model: KerasModel, digits_batch) -> None:
    x, y = digits_batch[0][:16], digits_batch[1][:16]
    spec = resolve_attack({"attack": "square", "norm": "linf", "eps": 0.2, "toolkit": "art", "max_queries": 30,
                           "batch_size": 16})  # fmt: skip
    adapter = get_adapter("art")
    translation = adapter.translate(spec, 10)
    with keras_model.counting() as counters, keras_model.query_budget(x, y, spec.max_queries):
        adapter.build(translation, spec, keras_model)(x, y, None)
    assert counters.forward_samples > 30 * len(x)  # ART's Square runs its own iterations ...
    assert 0 < counters.forward_samples - counters.queries_blocked <= 30 * len(x)  # ... uninformed past the budget


def test_torchattacks_refuses_a_keras_model_with_the_reason(keras_model: KerasModel) -> None:
    spec = resolve_attack({"attack": "fgsm", "norm": "linf", "eps": 0.1, "toolkit": "torchattacks"})
    adapter = get_adapter("torchattacks")
    with pytest.raises(Unsupported, match="torchattacks attacks PyTorch modules only.*keras model"):
        adapter.build(adapter.translate(spec, 10), spec, keras_model)


def test_art_momentum_iterative_is_refused_on_keras(keras_model: KerasModel) -> None:
    spec = resolve_attack({"attack": "mifgsm", "norm": "linf", "eps": 0.1, "steps": 5, "toolkit": "art"})
    adapter = get_adapter("art")
    with pytest.raises(Unsupported, match="disabled for TensorFlow"):
        adapter.build(adapter.translate(spec, 10), spec, keras_model)


def test_foolbox_tensorflow_int32_labels_defect_is_avoided(keras_model: KerasModel, digits_batch) -> None:
    """eagerpy compares TF tensors of different dtypes through np.find_common_type (gone in NumPy 2): Foolbox on
    a TensorFlowModel crashes with int32 labels. The adapter hands Foolbox int64 labels whatever it is given."""
    import foolbox as fb

    x, y = digits_batch[0][:8], digits_batch[1][:8]
    fmodel = fb.TensorFlowModel(keras_model, bounds=(0.0, 1.0), device="/CPU:0", preprocessing=None)
    attack = fb.attacks.LinfFastGradientAttack(random_start=False)
    x_tf = tf.convert_to_tensor(x.numpy())
    with pytest.raises(AttributeError, match="find_common_type"):
        attack(fmodel, x_tf, fb.criteria.Misclassification(tf.constant(y.numpy(), tf.int32)), epsilons=0.1)
    spec = resolve_attack({"attack": "fgsm", "norm": "linf", "eps": 0.1, "toolkit": "foolbox"})
    adapter = get_adapter("foolbox")
    x_adv = adapter.build(adapter.translate(spec, 10), spec, keras_model)(x, y.to(torch.int32), None)
    expected = attack(fmodel, x_tf, fb.criteria.Misclassification(tf.constant(y.numpy(), tf.int64)), epsilons=0.1)
    assert torch.equal(x_adv, torch.from_numpy(expected[1].numpy()))


def test_keras_file_model(tmp_path, keras_model: KerasModel) -> None:
    path = tmp_path / "mine.keras"
    keras_model.net.save(path)
    train = load_split("digits", "train")
    cfg = ModelConfig(keras=path)
    assert (cfg.framework, cfg.name) == ("keras", "mine")
    net, record = build_model(cfg, train, log=print)
    x = select(load_split("digits", "test"), 32, seed=0).x
    mine = KerasModel(net, train.input_shape, 10, (0.0, 1.0), "cpu", "mine")
    assert torch.equal(mine.predict(x), keras_model.predict(x))
    assert record["checkpoint"] == str(path) and not record["trained"]
    with pytest.raises(ModelError, match="not found"):
        build_model(ModelConfig(keras=tmp_path / "absent.keras"), train, log=print)
    wrong = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(), keras.layers.Dense(10)])
    wrong.save(tmp_path / "wrong.keras")
    with pytest.raises(ModelError, match=r"fails on NHWC inputs of shape \(2, 8, 8, 1\)"):
        build_model(ModelConfig(keras=tmp_path / "wrong.keras"), train, log=print)


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ({"framework": "keras", "arch": "lenet"}, "framework keras has arch small_cnn, resnet18; not lenet"),
        ({"framework": "keras", "factory": "pkg.mod:fn"}, "framework keras takes arch or keras"),
        ({"framework": "keras", "training": {"optimizer": "sgd", "weight_decay": 5e-4}}, "use optimizer adamw"),
        ({"framework": "torch", "keras": "m.keras"}, "framework must be keras"),
    ],
)
def test_keras_config_errors_are_one_line(model: dict, message: str) -> None:
    raw = {"name": "k", "model": model, "attacks": [{"attack": "fgsm", "norm": "linf", "eps": 0.1}]}
    with pytest.raises(ScenarioError, match=message) as info:
        load_raw(raw)
    assert "\n" not in str(info.value)


def test_bf16_is_refused_for_keras_models() -> None:
    raw = {
        "name": "k",
        "precision": "bf16",
        "model": {"framework": "keras"},
        "attacks": [{"attack": "fgsm", "norm": "linf", "eps": 0.1}],
    }
    with pytest.raises(ScenarioError, match="precision bf16 applies to PyTorch models; small_cnn-keras is a Keras"):
        load_raw(raw)


def test_keras_scenario_without_tensorflow_is_one_line_error(tmp_path) -> None:
    scenario = tmp_path / "k.yaml"
    scenario.write_text("name: k\nmodel: {framework: keras}\nattacks: [{attack: fgsm, norm: linf, eps: 0.1}]\n")
    code = "import sys; sys.modules['tensorflow'] = None; from bridge.cli import main; sys.exit(main())"
    done = subprocess.run([sys.executable, "-c", code, "validate", str(scenario)], capture_output=True, text=True)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "model.framework: keras: TensorFlow is not installed" in lines[0]
    assert "pip install 'advbridge[tf]'" in lines[0] and str(scenario) in lines[0]


def test_cross_framework_run(store: str, model_cache: str) -> None:
    """The same architecture in PyTorch and Keras, side by side: every number computed the same way."""
    raw = {
        "name": "cross", "seed": 0, "device": "cpu", "batch_size": 50,
        "data": {"dataset": "digits", "n_samples": 50},
        "models": [{"arch": "small_cnn", "training": TRAINING},
                   {"arch": "small_cnn", "framework": "keras", "training": TRAINING}],
        "attacks": [{"attack": "fgsm", "norm": "linf", "eps": [0.1]},
                    {"attack": "pgd", "norm": "linf", "eps": [0.1], "steps": 10, "step_size": 0.02,
                     "random_start": False}],
    }  # fmt: skip
    table = run_scenario(raw, progress=False, log=lambda _: None)
    keras_rows = table[table["model"] == "small_cnn-keras"].set_index(["attack", "toolkit"])
    assert keras_rows.loc[("fgsm", "torchattacks"), "status"].startswith("unsupported: torchattacks attacks PyTorch")
    assert (keras_rows.loc[[("fgsm", "art"), ("fgsm", "foolbox"), ("pgd", "art"), ("pgd", "foolbox")], "status"]
            == "ok").all()  # fmt: skip
    pgd = keras_rows.loc[[("pgd", "art"), ("pgd", "foolbox")]]
    assert pgd["robust_accuracy"].nunique() == 1 and (pgd["backward_calls"] == 10).all()
    torch_rows = table[table["model"] == "small_cnn"]
    assert (torch_rows["status"] == "ok").all() and len(torch_rows) == 6
    checks = pd.DataFrame(table.attrs["checks"])
    gradient = checks[checks["name"] == "gradients_not_vanishing"].set_index("model")["status"]
    assert set(gradient) == {"passed"} and set(gradient.index) == {"small_cnn", "small_cnn-keras"}
    ok = keras_rows[keras_rows["status"] == "ok"]
    assert np.allclose(ok["linf_max"], 0.1, atol=1e-6) and (ok["budget_violations"] == 0).all()


def test_a_keras_zoo_model_trains_to_the_same_weights_every_time(tmp_path, monkeypatch) -> None:
    """Its initial weights are drawn from the training seed, as for PyTorch: a cache key names one model."""
    import numpy as np

    cfg = ModelConfig(framework="keras", arch="small_cnn", training={**TRAINING, "epochs": 2})
    weights = []
    for i in range(2):
        monkeypatch.setenv("ADVBRIDGE_CACHE", str(tmp_path / f"cache-{i}"))
        net, record = build_model(cfg, load_split("digits", "train"), log=lambda _: None)
        assert record["trained"]
        weights.append(np.concatenate([w.numpy().ravel() for w in net.weights]))
        np.random.rand(7)  # what ran between two trainings must not matter
    assert np.array_equal(*weights)
