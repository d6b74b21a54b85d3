"""The model zoo: image classifiers for any (channels, height, width) input of at least 8x8 and any class count.

Every builder is `(input_shape, n_classes, dropout=0.0, **options) -> nn.Module`; its keyword options are what
a scenario may set under `model.options`, checked against the builder's signature by `validate_options`.
Global average (or adaptive) pooling before the classifier is what lets one builder serve 8x8 digits, 28x28
MNIST, 32x32 CIFAR and larger image folders. The first docstring line of each builder is its description.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from pydantic import PositiveInt, TypeAdapter, ValidationError
from torch import nn

MIN_SIZE = 8
_COMMON = ("input_shape", "n_classes", "dropout")  # every builder's arguments; the rest are its options


def _conv_bn(cin: int, cout: int, kernel: int, stride: int = 1) -> nn.Sequential:
    """Conv (no bias: the batch norm has one), batch norm, ReLU."""
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, stride, padding=kernel // 2, bias=False), nn.BatchNorm2d(cout), nn.ReLU()
    )


def _head(channels: int, n_classes: int, dropout: float) -> nn.Sequential:
    """Global average pooling, dropout and the linear classifier: independent of the input size."""
    return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout), nn.Linear(channels, n_classes))


def small_cnn(input_shape: tuple[int, ...], n_classes: int, dropout: float = 0.0) -> nn.Module:
    """Two 3x3 convs, a 2x2 max-pool and two dense layers: fast, ~97% on digits in seconds on a CPU."""
    c, h, w = input_shape
    ph, pw = min(h // 2, 8), min(w // 2, 8)  # bounds the dense layer for inputs larger than 16x16
    # an identity adaptive pool still costs a third of a digits training step: leave it out when it does nothing
    pool = nn.Identity() if (ph, pw) == (h // 2, w // 2) else nn.AdaptiveAvgPool2d((ph, pw))
    return nn.Sequential(
        nn.Conv2d(c, 32, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(32, 64, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        pool,
        nn.Flatten(),
        nn.Linear(64 * ph * pw, 128),
        nn.ReLU(),
        nn.Dropout(dropout),
        nn.Linear(128, n_classes),
    )


def lenet(input_shape: tuple[int, ...], n_classes: int, dropout: float = 0.0) -> nn.Module:
    """LeNet-5 style: two 5x5 convs with max-pooling, then 120-84-n dense layers."""
    c, h, w = input_shape
    ph, pw = min(h // 4, 5), min(w // 4, 5)  # 5x5 as in LeNet-5 from 20x20 up
    return nn.Sequential(
        nn.Conv2d(c, 6, 5, padding=2),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5, padding=2),
        nn.ReLU(),
        nn.AdaptiveMaxPool2d((ph, pw)),
        nn.Flatten(),
        nn.Linear(16 * ph * pw, 120),
        nn.ReLU(),
        nn.Dropout(dropout),
        nn.Linear(120, 84),
        nn.ReLU(),
        nn.Dropout(dropout),
        nn.Linear(84, n_classes),
    )


class BasicBlock(nn.Module):
    """ResNet basic block: two 3x3 convs with batch norm, added to a (projected) shortcut."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class PreActBlock(nn.Module):
    """Pre-activation block (He et al. 2016): BN-ReLU before each conv, identity path left clean."""

    def __init__(self, cin: int, cout: int, stride: int, dropout: float = 0.0):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.shortcut = None
        if stride != 1 or cin != cout:
            self.shortcut = nn.Conv2d(cin, cout, 1, stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(x))
        shortcut = x if self.shortcut is None else self.shortcut(out)
        out = self.conv1(out)
        out = self.conv2(self.dropout(F.relu(self.bn2(out))))
        return out + shortcut


def _stage(block: type[nn.Module], cin: int, cout: int, n: int, stride: int, **kwargs: Any) -> nn.Sequential:
    return nn.Sequential(*(block(cin if i == 0 else cout, cout, stride if i == 0 else 1, **kwargs) for i in range(n)))


def resnet18(input_shape: tuple[int, ...], n_classes: int, dropout: float = 0.0, width: PositiveInt = 64) -> nn.Module:
    """ResNet-18, CIFAR style (3x3 stem, no max-pool): 11.2M parameters at the default width 64."""
    w = width
    return nn.Sequential(
        _conv_bn(input_shape[0], w, 3),
        _stage(BasicBlock, w, w, 2, 1),
        _stage(BasicBlock, w, 2 * w, 2, 2),
        _stage(BasicBlock, 2 * w, 4 * w, 2, 2),
        _stage(BasicBlock, 4 * w, 8 * w, 2, 2),
        _head(8 * w, n_classes, dropout),
    )


def preact_resnet18(
    input_shape: tuple[int, ...], n_classes: int, dropout: float = 0.0, width: PositiveInt = 64
) -> nn.Module:
    """Pre-activation ResNet-18, CIFAR style: the usual adversarial-training baseline (11.2M parameters)."""
    w = width
    return nn.Sequential(
        nn.Conv2d(input_shape[0], w, 3, 1, 1, bias=False),
        _stage(PreActBlock, w, w, 2, 1),
        _stage(PreActBlock, w, 2 * w, 2, 2),
        _stage(PreActBlock, 2 * w, 4 * w, 2, 2),
        _stage(PreActBlock, 4 * w, 8 * w, 2, 2),
        nn.BatchNorm2d(8 * w),
        nn.ReLU(),
        _head(8 * w, n_classes, dropout),
    )


def wide_resnet(
    input_shape: tuple[int, ...],
    n_classes: int,
    dropout: float = 0.0,
    depth: PositiveInt = 16,
    widen: PositiveInt = 4,
) -> nn.Module:
    """Wide ResNet WRN-depth-widen (Zagoruyko & Komodakis), dropout inside the blocks: WRN-16-4 by default."""
    if depth < 10 or (depth - 4) % 6:
        raise ValueError(f"wide_resnet depth must be 6n+4 with n >= 1 (10, 16, 22, 28, ...); got {depth}")
    n = (depth - 4) // 6
    widths = [16, 16 * widen, 32 * widen, 64 * widen]
    return nn.Sequential(
        nn.Conv2d(input_shape[0], widths[0], 3, 1, 1, bias=False),
        _stage(PreActBlock, widths[0], widths[1], n, 1, dropout=dropout),
        _stage(PreActBlock, widths[1], widths[2], n, 2, dropout=dropout),
        _stage(PreActBlock, widths[2], widths[3], n, 2, dropout=dropout),
        nn.BatchNorm2d(widths[3]),
        nn.ReLU(),
        _head(widths[3], n_classes, 0.0),
    )


class DenseLayer(nn.Module):
    """DenseNet-BC layer: BN-ReLU-1x1 conv (4k channels), BN-ReLU-3x3 conv (k channels), concatenated to its input."""

    def __init__(self, cin: int, growth_rate: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.BatchNorm2d(cin),
            nn.ReLU(),
            nn.Conv2d(cin, 4 * growth_rate, 1, bias=False),
            nn.BatchNorm2d(4 * growth_rate),
            nn.ReLU(),
            nn.Conv2d(4 * growth_rate, growth_rate, 3, padding=1, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, self.body(x)], 1)


def densenet(
    input_shape: tuple[int, ...],
    n_classes: int,
    dropout: float = 0.0,
    growth_rate: PositiveInt = 12,
    blocks: tuple[PositiveInt, ...] = (6, 6, 6),
) -> nn.Module:
    """DenseNet-BC, CIFAR style: dense blocks of `blocks` layers, growth rate k, transitions halving channels."""
    if not blocks:
        raise ValueError("densenet blocks must list at least one block size")
    channels = 2 * growth_rate
    layers: list[nn.Module] = [nn.Conv2d(input_shape[0], channels, 3, padding=1, bias=False)]
    for i, n in enumerate(blocks):
        for _ in range(n):
            layers.append(DenseLayer(channels, growth_rate))
            channels += growth_rate
        if i < len(blocks) - 1:  # transition: compression 0.5, then 2x2 average pooling (ceil: never below 1x1)
            layers += [
                nn.BatchNorm2d(channels),
                nn.ReLU(),
                nn.Conv2d(channels, channels // 2, 1, bias=False),
                nn.AvgPool2d(2, ceil_mode=True),
            ]
            channels //= 2
    layers += [nn.BatchNorm2d(channels), nn.ReLU(), _head(channels, n_classes, dropout)]
    return nn.Sequential(*layers)


class InceptionBlock(nn.Module):
    """Parallel 1x1, 1x1-3x3, 1x1-5x5 and 3x3 max-pool-1x1 branches, concatenated: 3*width output channels."""

    def __init__(self, cin: int, width: int):
        super().__init__()
        half, quarter = max(width // 2, 1), max(width // 4, 1)
        self.branches = nn.ModuleList(
            [
                _conv_bn(cin, width, 1),
                nn.Sequential(_conv_bn(cin, half, 1), _conv_bn(half, width, 3)),
                nn.Sequential(_conv_bn(cin, quarter, 1), _conv_bn(quarter, half, 5)),
                nn.Sequential(nn.MaxPool2d(3, 1, 1), _conv_bn(cin, half, 1)),
            ]
        )
        self.out_channels = 2 * width + 2 * half

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([branch(x) for branch in self.branches], 1)


def inception(input_shape: tuple[int, ...], n_classes: int, dropout: float = 0.0, width: PositiveInt = 32) -> nn.Module:
    """A small Inception (GoogLeNet style) network: five blocks of parallel 1x1/3x3/5x5/pool branches."""
    layers: list[nn.Module] = [_conv_bn(input_shape[0], 2 * width, 3)]
    channels = 2 * width
    for i, w in enumerate([width, width, 2 * width, 2 * width, 4 * width]):
        if i in (2, 4):
            layers.append(nn.MaxPool2d(3, 2, 1))
        block = InceptionBlock(channels, w)
        layers.append(block)
        channels = block.out_channels
    layers.append(_head(channels, n_classes, dropout))
    return nn.Sequential(*layers)


Builder = Callable[..., nn.Module]
ARCHITECTURES: dict[str, Builder] = {
    f.__name__: f for f in (small_cnn, lenet, resnet18, preact_resnet18, wide_resnet, densenet, inception)
}
DESCRIPTIONS: dict[str, str] = {name: f.__doc__.splitlines()[0] for name, f in ARCHITECTURES.items()}


def _option_parameters(arch: str) -> dict[str, inspect.Parameter]:
    params = inspect.signature(ARCHITECTURES[arch], eval_str=True).parameters
    return {name: p for name, p in params.items() if name not in _COMMON}


def option_defaults(arch: str) -> dict[str, Any]:
    """The options `arch` takes, with their defaults (for `advbridge list models`)."""
    return {name: p.default for name, p in _option_parameters(arch).items()}


def validate_options(arch: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """`options` checked against `arch`'s signature and converted to its types (YAML lists become tuples)."""
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r}; allowed: {', '.join(ARCHITECTURES)}")
    params = _option_parameters(arch)
    unknown = sorted(set(options) - set(params))
    if unknown:
        allowed = ", ".join(f"{k}={v!r}" for k, v in option_defaults(arch).items()) or "none"
        raise ValueError(f"{arch} has no option {', '.join(unknown)}; its options: {allowed}")
    out = {}
    for name, value in options.items():
        try:
            out[name] = TypeAdapter(params[name].annotation).validate_python(value)
        except ValidationError as e:
            raise ValueError(f"{arch} option {name}={value!r}: {e.errors()[0]['msg']}") from None
    return out


def build(
    arch: str, input_shape: tuple[int, ...], n_classes: int, dropout: float = 0.0, options: Mapping[str, Any] = {}
) -> nn.Module:
    """The untrained `arch` network for inputs of `input_shape` (C, H, W) and `n_classes` outputs."""
    options = validate_options(arch, options)
    if len(input_shape) != 3 or min(input_shape[1:]) < MIN_SIZE:
        raise ValueError(f"{arch} needs (channels, height, width) inputs of at least 8x8; got {tuple(input_shape)}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1); got {dropout}")
    return ARCHITECTURES[arch](tuple(input_shape), n_classes, dropout, **options)
