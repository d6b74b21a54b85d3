"""The zoo: every architecture adapts to digits, MNIST and CIFAR shapes and class counts, and is differentiable."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from bridge.models.zoo import ARCHITECTURES, DESCRIPTIONS, build, validate_options

# small settings where the defaults would make the test slow; the defaults themselves are checked on CIFAR below
SMALL = {"wide_resnet": {"depth": 10, "widen": 1}, "densenet": {"growth_rate": 4, "blocks": [2, 2]}}
SHAPES = [((1, 8, 8), 10), ((1, 28, 28), 10), ((3, 32, 32), 10), ((3, 32, 32), 100)]


def n_params(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


@pytest.mark.parametrize("shape,n_classes", SHAPES, ids=lambda v: "x".join(map(str, v)) if isinstance(v, tuple) else v)
@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_forward_and_backward_on_every_shape(arch: str, shape: tuple[int, ...], n_classes: int) -> None:
    torch.manual_seed(0)
    net = build(arch, shape, n_classes, options=SMALL.get(arch, {})).eval()
    x = torch.rand(2, *shape, requires_grad=True)
    out = net(x)
    assert out.shape == (2, n_classes)
    out[:, 0].sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0  # gradients reach the input: white-box attacks work
    assert all(p.grad is not None for p in net.parameters() if p.requires_grad)


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_defaults_build_on_cifar_and_larger_images(arch: str) -> None:
    for shape in [(3, 32, 32), (3, 64, 64)]:
        net = build(arch, shape, 10).eval()
        with torch.no_grad():
            assert net(torch.rand(1, *shape)).shape == (1, 10)


def test_parameter_counts_match_the_literature() -> None:
    assert 11.1e6 < n_params(build("resnet18", (3, 32, 32), 10)) < 11.2e6
    assert 11.1e6 < n_params(build("preact_resnet18", (3, 32, 32), 10)) < 11.2e6
    assert n_params(build("wide_resnet", (3, 32, 32), 10, options={"depth": 28, "widen": 10})) == 36_479_194
    assert 2.7e6 < n_params(build("wide_resnet", (3, 32, 32), 10)) < 2.8e6  # WRN-16-4


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_dropout_appears_in_the_model(arch: str) -> None:
    net = build(arch, (3, 32, 32), 10, dropout=0.3, options=SMALL.get(arch, {}))
    assert any(isinstance(m, nn.Dropout) and m.p == 0.3 for m in net.modules())


def test_small_cnn_keeps_the_quickstart_layers_on_digits() -> None:
    net = build("small_cnn", (1, 8, 8), 10)
    assert [type(m).__name__ for m in net if not isinstance(m, (nn.Identity, nn.Dropout))] == [
        "Conv2d", "ReLU", "Conv2d", "ReLU", "MaxPool2d", "Flatten", "Linear", "ReLU", "Linear",
    ]  # fmt: skip


def test_every_architecture_has_a_one_line_description() -> None:
    assert set(DESCRIPTIONS) == set(ARCHITECTURES)
    assert all(text and "\n" not in text for text in DESCRIPTIONS.values())


def test_options_are_validated_against_the_signature() -> None:
    assert validate_options("densenet", {"blocks": [3, 3]}) == {"blocks": (3, 3)}
    with pytest.raises(ValueError, match="wide_resnet has no option dept; its options: depth=16, widen=4"):
        validate_options("wide_resnet", {"dept": 28})
    with pytest.raises(ValueError, match="small_cnn has no option width; its options: none"):
        validate_options("small_cnn", {"width": 8})
    with pytest.raises(ValueError, match="wide_resnet option widen=0: Input should be greater than 0"):
        validate_options("wide_resnet", {"widen": 0})
    with pytest.raises(ValueError, match="resnet18 option width='wide'"):
        validate_options("resnet18", {"width": "wide"})
    with pytest.raises(ValueError, match="unknown architecture 'vgg'; allowed: small_cnn, lenet"):
        validate_options("vgg", {})


def test_impossible_builds_are_refused() -> None:
    with pytest.raises(ValueError, match="depth must be 6n\\+4"):
        build("wide_resnet", (3, 32, 32), 10, options={"depth": 20})
    with pytest.raises(ValueError, match="at least 8x8; got \\(1, 4, 4\\)"):
        build("lenet", (1, 4, 4), 10)
    with pytest.raises(ValueError, match="at least one block"):
        build("densenet", (3, 32, 32), 10, options={"blocks": []})
