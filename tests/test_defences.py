"""Preprocessing defences: configs and their errors, torch-vs-ART parity, gradient modes (exact, BPDA, EOT),
bounds and shapes, seeding, and the clean accuracy of a defended digits CNN."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from pydantic import TypeAdapter, ValidationError
from torch import nn

from adapters import art_services
from bridge.data.dataset import Dataset, load_split
from bridge.defences.preprocessing import (
    DEFENCE_KINDS,
    DefenceConfig,
    DefenceError,
    Defended,
    Preprocess,
    check_defence,
    defend,
    describe,
    describe_markdown,
    parse_defence,
)
from bridge.models.shared import SharedModel
from bridge.models.training import TrainingConfig, train
from bridge.models.zoo import build

BOUNDS = (0.0, 1.0)
RANDOMISED = ("gaussian_noise", "tvm")


def cfg(kind: str, **fields: Any) -> Any:
    return parse_defence({"kind": kind, "gradient": "bpda", **fields})


def images(n: int = 6, shape: tuple[int, ...] = (1, 8, 8), seed: int = 0, scale: float = 1.0) -> torch.Tensor:
    return torch.rand(n, *shape, generator=torch.Generator().manual_seed(seed)) * scale


@pytest.fixture(scope="module")
def digits() -> tuple[Dataset, Dataset]:
    quiet = lambda _: None  # noqa: E731
    return load_split("digits", "train", log=quiet), load_split("digits", "test", log=quiet)


@pytest.fixture(scope="module")
def trained(digits: tuple[Dataset, Dataset]) -> nn.Module:
    """The zoo's small_cnn trained without any defence (about 97% clean test accuracy)."""
    train_data, _ = digits
    torch.manual_seed(0)
    net = build("small_cnn", train_data.input_shape, train_data.n_classes)
    train(net, train_data, TrainingConfig(epochs=10, seed=0))
    return net


def accuracy(model: nn.Module, data: Dataset) -> float:
    with torch.no_grad():
        return float((model(data.x).argmax(1) == data.y).float().mean())


# --- configs ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"kind": "jpeg", "gradient": "exact"}, "jpeg is not differentiable in torch, so it has no exact gradient; "),
        ({"kind": "tvm", "gradient": "exact"}, "use gradient: bpda or eot"),
        ({"kind": "thermometer", "gradient": "exact"}, "use gradient: bpda"),
        ({"kind": "jpeg", "gradient": "eot"}, "gradient eot averages over random draws but jpeg is deterministic"),
        (
            {"kind": "feature_squeezing", "gradient": "eot"},
            "feature_squeezing is deterministic; use gradient: exact or bpda",
        ),
        ({"kind": "spatial_smoothing", "gradient": "eot"}, "spatial_smoothing is deterministic"),
        ({"kind": "gaussian_noise", "gradient": "exact", "eot_samples": 4}, "eot_samples applies to gradient eot only"),
        ({"kind": "gaussian_noise", "gradient": "eot", "bpda": "estimate"}, "bpda applies to gradient bpda only"),
        ({"kind": "spatial_smoothing", "gradient": "exact", "bpda": "identity"}, "bpda applies to gradient bpda only"),
        ({"kind": "jpeg", "gradient": "bpda", "qualty": 50}, "jpeg: unknown key qualty; allowed: "),
        (
            {"kind": "jpeg", "gradient": "bpda", "quality": 0},
            "jpeg: quality: Input should be greater than or equal to 1",
        ),
        ({"kind": "thermometer"}, "thermometer: gradient is required (bpda)"),
        ({"kind": "blur", "gradient": "bpda"}, "defence kind must be one of feature_squeezing, jpeg, "),
    ],
)
def test_invalid_configs_give_one_line_errors(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(DefenceError) as err:
        parse_defence(raw)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_configs_validate_inside_a_pydantic_model_too() -> None:
    """Embedded in a scenario model, the same checks fire (the scenario's own error formatting applies)."""
    with pytest.raises(ValidationError, match="no exact gradient; use gradient: bpda"):
        TypeAdapter(DefenceConfig).validate_python({"kind": "jpeg", "gradient": "exact"})


def test_valid_configs_derive_names_and_labels() -> None:
    assert cfg("jpeg", quality=50).name == "jpeg-q50"
    assert cfg("feature_squeezing", bit_depth=3).name == "squeeze-3bit"
    assert cfg("spatial_smoothing").name == "median-3x3"
    assert cfg("thermometer", name="thermo").name == "thermo"
    eot = parse_defence({"kind": "tvm", "gradient": "eot", "eot_samples": 4})
    assert eot.label == "tvm-p0.3 (eot x4, bpda identity)"
    assert eot.parameters() == {"prob": 0.3, "norm": 2, "lamb": 0.5, "solver": "L-BFGS-B", "max_iter": 10}
    exact = parse_defence({"kind": "feature_squeezing", "gradient": "exact"})
    assert exact.label == "squeeze-4bit (exact)" and not exact.uses_bpda


def test_describe_lists_every_kind_with_a_real_art_class() -> None:
    rows = describe()
    assert [r["kind"] for r in rows] == list(DEFENCE_KINDS)
    import art.defences.preprocessor as art_pre

    for row in rows:
        assert hasattr(art_pre, row["art_class"]), row
    modes = {r["kind"]: r["gradients"] for r in rows}
    assert modes == {
        "feature_squeezing": "exact, bpda",
        "jpeg": "bpda",
        "spatial_smoothing": "exact, bpda",
        "gaussian_noise": "exact, bpda, eot",
        "tvm": "bpda, eot",
        "thermometer": "bpda",
    }
    assert describe_markdown().count("\n") == len(DEFENCE_KINDS) + 2


@pytest.mark.parametrize("kind", DEFENCE_KINDS)
def test_art_preprocessors_get_every_argument(kind: str) -> None:
    """art_preprocessor refuses to leave any constructor argument to ART's defaults, and predicts only."""
    pre = art_services.art_preprocessor(cfg(kind), BOUNDS)
    assert type(pre).__name__ == art_services.DEFENCES[kind][0]
    assert pre.apply_predict and not pre.apply_fit


def test_check_defence_refuses_inputs_it_cannot_handle() -> None:
    with pytest.raises(DefenceError, match=r"jpeg needs data bounds \(0, 1\) or \(0, 255\)"):
        check_defence(cfg("jpeg"), (1, 8, 8), (-1.0, 1.0))
    with pytest.raises(DefenceError, match=r"spatial_smoothing needs images \(C, H, W\)"):
        check_defence(cfg("spatial_smoothing"), (20,), BOUNDS)
    check_defence(cfg("jpeg"), (3, 8, 8), (0, 255))
    check_defence(cfg("feature_squeezing"), (20,), BOUNDS)


# --- forward: parity with ART, bounds, shapes ---------------------------------------------------------------


@pytest.mark.parametrize("bit_depth", [1, 3, 4, 8])
@pytest.mark.parametrize("bounds", [(0.0, 1.0), (0.0, 255.0)])
def test_feature_squeezing_matches_art(bit_depth: int, bounds: tuple[float, float]) -> None:
    c = cfg("feature_squeezing", bit_depth=bit_depth)
    x = images(16, (3, 8, 8), scale=bounds[1])
    ours = Preprocess(c, bounds)(x)
    art_out, _ = art_services.art_preprocessor(c, bounds)(x.numpy().copy())
    assert ours.dtype == torch.float32
    assert np.abs(ours.numpy() - art_out.astype(np.float32)).max() < 1e-6
    assert len(torch.unique(ours)) <= 2**bit_depth


@pytest.mark.parametrize("window", [1, 2, 3, 4, 5, 9])
def test_spatial_smoothing_matches_art(window: int) -> None:
    """Same median, same mirrored edges, same centre for even windows; 9 is wider than the 8x8 image."""
    c = cfg("spatial_smoothing", window_size=window)
    x = images(8, (3, 8, 8))
    ours = Preprocess(c, BOUNDS)(x)
    art_out, _ = art_services.art_preprocessor(c, BOUNDS)(x.numpy().copy())
    assert np.abs(ours.numpy() - art_out).max() < 1e-6
    if window > 1:
        assert not torch.equal(ours, x)


def test_thermometer_matches_art_at_the_thresholds() -> None:
    c = cfg("thermometer", num_space=5)
    x = images(4, (3, 6, 6))
    x[0, 0, 0, :5] = torch.tensor([0.0, 0.2, 0.4, 0.6, 1.0])  # exactly on the level boundaries
    ours = Preprocess(c, BOUNDS)(x)
    art_out, _ = art_services.art_preprocessor(c, BOUNDS)(x.numpy().copy())
    assert ours.shape == (4, 15, 6, 6)
    assert np.abs(ours.numpy() - art_out).max() == 0


@pytest.mark.parametrize("kind", DEFENCE_KINDS)
def test_outputs_stay_in_bounds_with_the_right_shape(kind: str) -> None:
    c = cfg(kind)
    x = images(5, (3, 8, 8))
    out = Preprocess(c, BOUNDS)(x)
    channels = 3 * 10 if kind == "thermometer" else 3
    assert out.shape == (5, channels, 8, 8) == (5, *c.out_shape((3, 8, 8)))
    assert out.dtype == torch.float32 and out.device == x.device
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    assert Preprocess(c).out_channels(3) == channels
    if kind != "thermometer":
        assert not torch.equal(out, x)  # the defence did something


@pytest.mark.parametrize("kind", RANDOMISED)
def test_randomised_defences_repeat_under_torch_seed(kind: str) -> None:
    pre = Preprocess(cfg(kind), BOUNDS)
    x = images(4)
    np.random.seed(123)
    numpy_state = np.random.get_state()[1].copy()
    torch.manual_seed(7)
    first = pre(x)
    torch.manual_seed(7)
    again = pre(x)
    other = pre(x)
    assert torch.equal(first, again)
    assert not torch.equal(first, other)
    assert np.array_equal(np.random.get_state()[1], numpy_state)  # TVM's numpy draws leave numpy's state alone


# --- gradients ----------------------------------------------------------------------------------------------


def _input_grad(pre: nn.Module, x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """d/dx of <pre(x), g>."""
    x = x.clone().requires_grad_(True)
    (pre(x) * g).sum().backward()
    return x.grad


@pytest.mark.parametrize("kind", DEFENCE_KINDS)
def test_bpda_identity_passes_the_gradient_through(kind: str) -> None:
    c = cfg(kind)
    pre = Preprocess(c, BOUNDS)
    x = images(3)
    g = torch.randn(3, c.out_channels(1), 8, 8)
    grad = _input_grad(pre, x, g)
    expected = g.sum(1, keepdim=True) if kind == "thermometer" else g  # thermometer: identity on every level
    assert torch.equal(grad, expected)


def test_exact_feature_squeezing_gradient_is_zero() -> None:
    """What a naive attack gets: round() has zero derivative almost everywhere."""
    pre = Preprocess(parse_defence({"kind": "feature_squeezing", "gradient": "exact"}), BOUNDS)
    grad = _input_grad(pre, images(), torch.randn(6, 1, 8, 8))
    assert grad.shape == (6, 1, 8, 8) and float(grad.abs().max()) == 0.0


def test_exact_smoothing_gradient_routes_each_output_to_its_median() -> None:
    pre = Preprocess(parse_defence({"kind": "spatial_smoothing", "window_size": 3, "gradient": "exact"}), BOUNDS)
    x = images(2)
    grad = _input_grad(pre, x, torch.ones(2, 1, 8, 8))
    assert float(grad.sum()) == 2 * 64  # each output's gradient lands on exactly one input (its median)
    assert float(grad.min()) >= 0 and int((grad > 0).sum()) < 2 * 64  # some pixels are the median of several


def test_exact_noise_gradient_is_one_inside_the_bounds_and_zero_where_clipped() -> None:
    pre = Preprocess(parse_defence({"kind": "gaussian_noise", "sigma": 0.3, "gradient": "exact"}), BOUNDS)
    x = images(4)
    torch.manual_seed(0)
    out = pre(x)
    torch.manual_seed(0)
    grad = _input_grad(pre, x, torch.ones_like(x))
    clipped = (out == 0) | (out == 1)
    assert 0 < int(clipped.sum()) < x.numel()
    assert torch.equal(grad, (~clipped).float())


def test_bpda_estimate_for_thermometer_is_arts_ramp() -> None:
    c = cfg("thermometer", num_space=10, bpda="estimate")
    pre = Preprocess(c, BOUNDS)
    x = images(3, (2, 8, 8))
    x[:, :, 0, 0] = 0.0  # below every level: the ramp estimate is zero there, the identity is not
    g = torch.randn(3, 20, 8, 8)
    grad = _input_grad(pre, x, g)
    art_grad = art_services.art_preprocessor(c, BOUNDS).estimate_gradient(x.numpy().copy(), g.numpy().copy())
    assert np.abs(grad.numpy() - art_grad).max() < 1e-6
    identity = g.unflatten(1, (2, 10)).sum(2)
    assert not torch.allclose(grad, identity)
    assert float(grad[:, :, 0, 0].abs().max()) == 0.0


def test_bpda_estimate_for_jpeg_is_arts_identity() -> None:
    pre = Preprocess(cfg("jpeg", bpda="estimate"), BOUNDS)
    g = torch.randn(2, 1, 8, 8)
    assert torch.equal(_input_grad(pre, images(2), g), g)


class CountingNet(nn.Module):
    """A real linear classifier that counts its calls."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.fc = nn.Linear(64, 10)
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.fc(x.flatten(1))


@pytest.mark.parametrize("kind", RANDOMISED)
def test_eot_averages_logits_over_draws(kind: str) -> None:
    samples = 3 if kind == "gaussian_noise" else 2
    net = CountingNet()
    model = defend(net, {"kind": kind, "gradient": "eot", "eot_samples": samples}, BOUNDS)
    x = images(2).requires_grad_(True)
    torch.manual_seed(5)
    logits = model(x)
    assert net.calls == samples
    logits.sum().backward()
    # The same draws one at a time: the output is their mean, the gradient the mean of their gradients.
    torch.manual_seed(5)
    draws, grads = [], []
    for _ in range(samples):
        xi = x.detach().clone().requires_grad_(True)
        out = net(model.defence(xi))
        out.sum().backward()
        draws.append(out.detach())
        grads.append(xi.grad)
    assert torch.allclose(logits, torch.stack(draws).mean(0), atol=1e-6)
    assert torch.allclose(x.grad, torch.stack(grads).mean(0), atol=1e-6)
    assert not torch.allclose(draws[0], draws[1])  # the draws really differ


def test_shared_model_counts_and_differentiates_the_defended_model(trained: nn.Module) -> None:
    model = SharedModel(defend(trained, cfg("jpeg", quality=75)), (1, 8, 8), 10, BOUNDS)
    assert isinstance(model.net, Defended) and model.net.net is trained
    x = images(4).requires_grad_(True)
    with model.counting() as counters:
        loss = nn.functional.cross_entropy(model(x), torch.arange(4))
        loss.backward()
    assert (counters.forward_calls, counters.backward_calls) == (1, 1)
    assert x.grad is not None and float(x.grad.abs().sum()) > 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("kind", DEFENCE_KINDS)
def test_defences_stay_on_cuda_and_match_cpu(kind: str) -> None:
    """Same outputs on either device (noise and TVM masks are drawn on the CPU generator); gradients on CUDA."""
    pre = Preprocess(cfg(kind), BOUNDS)
    x = images(3, (3, 8, 8))
    torch.manual_seed(0)
    on_cpu = pre(x)
    torch.manual_seed(0)
    on_gpu = pre(x.cuda())
    assert on_gpu.device.type == "cuda" and on_gpu.dtype == torch.float32
    assert torch.allclose(on_gpu.cpu(), on_cpu, atol=1e-6)
    grad = _input_grad(pre, x.cuda(), torch.ones_like(on_gpu))
    assert grad.device.type == "cuda" and grad.shape == x.shape


# --- a defended digits CNN ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("defence", "minimum"),
    [
        ({"kind": "feature_squeezing", "bit_depth": 3}, 0.95),
        ({"kind": "feature_squeezing", "bit_depth": 4}, 0.95),
        ({"kind": "spatial_smoothing", "window_size": 3}, 0.70),  # a 3x3 median blurs 8x8 digits
        ({"kind": "jpeg", "quality": 75}, 0.95),
        ({"kind": "jpeg", "quality": 50}, 0.93),
        ({"kind": "gaussian_noise", "sigma": 0.1}, 0.93),
    ],
    ids=lambda v: "-".join(map(str, v.values())) if isinstance(v, dict) else str(v),
)
def test_defended_cnn_keeps_clean_accuracy(
    trained: nn.Module, digits: tuple[Dataset, Dataset], defence: dict[str, Any], minimum: float
) -> None:
    """The net was trained without the defence; measured (10 epochs, seed 0): clean 0.974, squeeze 3/4 bit 0.978/
    0.972, median 3x3 0.794, jpeg q75/q50 0.974/0.965, noise 0.1 about 0.97."""
    _, test = digits
    torch.manual_seed(0)
    clean = accuracy(trained, test)
    defended = accuracy(defend(trained, {**defence, "gradient": "bpda"}, BOUNDS), test)
    assert clean > 0.95
    assert minimum <= defended <= clean + 0.02


def test_thermometer_model_trains_with_the_encoding_in_place(digits: tuple[Dataset, Dataset]) -> None:
    train_data, test = digits
    c = cfg("thermometer", num_space=10)
    torch.manual_seed(0)
    model = defend(build("small_cnn", c.out_shape(train_data.input_shape), train_data.n_classes), c, BOUNDS)
    train(model, train_data, TrainingConfig(epochs=5, seed=0))
    assert accuracy(model, test) > 0.9
