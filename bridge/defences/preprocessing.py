"""Preprocessing defences folded into the shared model as its first layer, with an explicit gradient mode.

A scenario declares a defence (feature squeezing, JPEG, spatial smoothing, Gaussian noise, total variation
minimisation, thermometer encoding); `defend(net, cfg)` returns `Defended` = `Preprocess` then the net, and the
SharedModel wraps that like any net, so all three toolkits attack the same defended model and the bridge's
counting hooks see every pass. How gradients cross the defence is the scenario's choice, never a toolkit's:

- `exact`: plain autograd through a torch implementation (feature squeezing = round, whose gradient is zero
  almost everywhere: what a naive attack sees; median smoothing; Gaussian noise).
- `bpda`: the defence runs forward (ART's numpy class where there is no torch version) and the backward pass
  is the identity (`bpda: identity`; for thermometer, the identity on every level, summed) or the ART class's
  own `estimate_gradient` (`bpda: estimate`; the ramp for thermometer, the identity for the others).
- `eot` (randomised defences only): the defended model's output is the mean of the logits of
  `net(defence(x))` over `eot_samples` independent draws, so its gradient is the gradient of that expectation
  (each draw differentiated exactly for gaussian_noise, by BPDA for tvm). The averaged model is also what is
  evaluated: with `eot` the defended classifier is the smoothed one, not a single random draw.

Torch versions (squeezing, smoothing, noise, thermometer) match ART's outputs exactly (see the tests); JPEG and
TVM run ART on the host. Random draws come from torch's global generator (TVM's numpy mask is seeded from it),
so a cell seeded by the runner repeats. ART is imported only when a numpy defence or an estimate is needed.
"""

from __future__ import annotations

import importlib
from typing import Annotated, Any, ClassVar, Literal

import torch
from pydantic import Field, TypeAdapter, ValidationError, model_validator
from torch import nn

from bridge.core.errors import BridgeError
from bridge.core.schema import Strict

GRADIENT_MODES = ("exact", "bpda", "eot")
# Data bounds ART's JpegCompression accepts (it converts to 8-bit pixels).
JPEG_BOUNDS = ((0.0, 1.0), (0.0, 255.0))


class DefenceError(BridgeError):
    """A defence that cannot be built as written; str() is one line."""


class Defence(Strict):
    """Fields common to every defence; subclasses add the defence's own parameters and its class facts."""

    # Facts about the defence, used for validation and docs.
    exact_gradient: ClassVar[bool] = False  # has a torch implementation autograd can differentiate
    randomised: ClassVar[bool] = False  # draws noise per forward (so eot applies)
    torch_forward: ClassVar[bool] = True  # the forward runs in torch (else ART's numpy class, on the host)
    summary: ClassVar[str] = ""

    kind: str
    name: str | None = None  # the label in results; default derived from the parameters, e.g. jpeg-q75
    gradient: Literal["exact", "bpda", "eot"]
    bpda: Literal["identity", "estimate"] = "identity"  # estimate: the ART class's own estimate_gradient
    eot_samples: int = Field(default=10, ge=1)

    @classmethod
    def gradients(cls) -> tuple[str, ...]:
        """The gradient modes this defence allows."""
        return tuple(
            m
            for m in GRADIENT_MODES
            if m == "bpda" or (m == "exact" and cls.exact_gradient) or (m == "eot" and cls.randomised)
        )

    @model_validator(mode="after")
    def _modes(self) -> Defence:
        allowed = self.gradients()
        use = " or ".join(allowed)
        if self.gradient == "exact" and "exact" not in allowed:
            raise ValueError(
                f"{self.kind} is not differentiable in torch, so it has no exact gradient; use gradient: {use}"
            )
        if self.gradient == "eot" and "eot" not in allowed:
            raise ValueError(
                f"gradient eot averages over random draws but {self.kind} is deterministic; use gradient: {use}"
            )
        given = self.model_fields_set
        if "eot_samples" in given and self.gradient != "eot":
            raise ValueError(f"eot_samples applies to gradient eot only, not {self.gradient}")
        if "bpda" in given and not self.uses_bpda:
            where = "gradient bpda" + ("" if self.exact_gradient else " or eot")
            raise ValueError(
                f"bpda applies to {where} only; {self.kind} with gradient {self.gradient} is differentiated exactly"
            )
        if self.name is None:
            self.name = self.default_name()
        return self

    @property
    def uses_bpda(self) -> bool:
        """Whether the backward pass through the defence is a BPDA estimate (else autograd)."""
        return self.gradient == "bpda" or (self.gradient == "eot" and not self.exact_gradient)

    @property
    def label(self) -> str:
        """Name and gradient mode, e.g. `jpeg-q75 (bpda identity)`, `noise-0.1 (eot x10)`."""
        mode = {"exact": "exact", "bpda": f"bpda {self.bpda}", "eot": f"eot x{self.eot_samples}"}[self.gradient]
        if self.gradient == "eot" and self.uses_bpda:
            mode += f", bpda {self.bpda}"
        return f"{self.name} ({mode})"

    def default_name(self) -> str:
        return self.kind

    def parameters(self) -> dict[str, Any]:
        """The defence's own parameters (not the common fields)."""
        common = set(Defence.model_fields)
        return {k: v for k, v in self.model_dump().items() if k not in common}

    def out_channels(self, channels: int) -> int:
        """Channels the defence outputs for `channels` input channels (what the defended net must take)."""
        return channels

    def out_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        """Per-sample output shape for a per-sample input shape (C, ...): build the defended net for this."""
        return (self.out_channels(input_shape[0]), *input_shape[1:])

    def changes_shape(self, input_shape: tuple[int, ...]) -> bool:
        """Whether the net must be built for (and trained behind) this defence (thermometer: more channels)."""
        return self.out_shape(input_shape) != tuple(input_shape)

    def identity(self) -> dict[str, Any]:
        """What the defence contributes to the identity of a model trained behind it (its name is a label)."""
        return self.model_dump(mode="json", exclude={"name"})

    def wrap(self, net: nn.Module, bounds: tuple[float, float]) -> nn.Module:
        """`net` behind this defence (`defend`)."""
        return defend(net, self, bounds)


class FeatureSqueezing(Defence):
    exact_gradient: ClassVar[bool] = True  # zero almost everywhere: what a naive attack gets
    summary: ClassVar[str] = "rounds every value to 2**bit_depth levels between the bounds"

    kind: Literal["feature_squeezing"]
    bit_depth: int = Field(default=4, ge=1, le=64)

    def default_name(self) -> str:
        return f"squeeze-{self.bit_depth}bit"


class Jpeg(Defence):
    torch_forward: ClassVar[bool] = False
    summary: ClassVar[str] = "JPEG-compresses each channel (RGB images as a whole) at `quality` (1-100)"

    kind: Literal["jpeg"]
    quality: int = Field(default=75, ge=1, le=100)

    def default_name(self) -> str:
        return f"jpeg-q{self.quality}"


class SpatialSmoothing(Defence):
    exact_gradient: ClassVar[bool] = True
    summary: ClassVar[str] = "median over a window_size x window_size window per channel (edges mirrored)"

    kind: Literal["spatial_smoothing"]
    window_size: int = Field(default=3, ge=1)

    def default_name(self) -> str:
        return f"median-{self.window_size}x{self.window_size}"


class GaussianNoise(Defence):
    exact_gradient: ClassVar[bool] = True
    randomised: ClassVar[bool] = True
    summary: ClassVar[str] = "adds sigma * N(0, 1) noise, clipped to the bounds, at every forward"

    kind: Literal["gaussian_noise"]
    sigma: float = Field(default=0.1, gt=0)

    def default_name(self) -> str:
        return f"noise-{self.sigma:g}"


class TotalVarMin(Defence):
    randomised: ClassVar[bool] = True
    torch_forward: ClassVar[bool] = False
    summary: ClassVar[str] = "reconstructs each image from a random pixel subset (kept with prob) by TV minimisation"

    kind: Literal["tvm"]
    prob: float = Field(default=0.3, gt=0, le=1)
    norm: int = Field(default=2, ge=1)
    lamb: float = Field(default=0.5, gt=0)
    solver: Literal["L-BFGS-B", "CG", "Newton-CG"] = "L-BFGS-B"
    max_iter: int = Field(default=10, ge=1)

    def default_name(self) -> str:
        return f"tvm-p{self.prob:g}"


class Thermometer(Defence):
    summary: ClassVar[str] = "one-hot-cumulative code of each value on num_space levels: C*num_space channels"

    kind: Literal["thermometer"]
    num_space: int = Field(default=10, ge=2)

    def default_name(self) -> str:
        return f"thermometer-{self.num_space}"

    def out_channels(self, channels: int) -> int:
        return channels * self.num_space


DefenceConfig = Annotated[
    FeatureSqueezing | Jpeg | SpatialSmoothing | GaussianNoise | TotalVarMin | Thermometer,
    Field(discriminator="kind"),
]
DEFENCE_CLASSES: dict[str, type[Defence]] = {
    c.model_fields["kind"].annotation.__args__[0]: c  # type: ignore[union-attr]
    for c in (FeatureSqueezing, Jpeg, SpatialSmoothing, GaussianNoise, TotalVarMin, Thermometer)
}
DEFENCE_KINDS = tuple(DEFENCE_CLASSES)
_ADAPTER = TypeAdapter(DefenceConfig)


def parse_defence(raw: dict[str, Any]) -> Defence:
    """A defence config from what a scenario wrote; `DefenceError` with a one-line message otherwise."""
    if not isinstance(raw, dict) or raw.get("kind") not in DEFENCE_CLASSES:
        got = raw.get("kind") if isinstance(raw, dict) else raw
        raise DefenceError(f"defence kind must be one of {', '.join(DEFENCE_KINDS)} (got {got!r})")
    try:
        return _ADAPTER.validate_python(raw)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"][1:])
        if first["type"] == "extra_forbidden":
            allowed = ", ".join(DEFENCE_CLASSES[raw["kind"]].model_fields)
            raise DefenceError(f"{raw['kind']}: unknown key {where}; allowed: {allowed}") from None
        if first["type"] == "missing":
            hint = f" ({', '.join(DEFENCE_CLASSES[raw['kind']].gradients())})" if where == "gradient" else ""
            raise DefenceError(f"{raw['kind']}: {where} is required{hint}") from None
        if not where:  # the config's own checks: the message names the kind
            raise DefenceError(first["msg"].removeprefix("Value error, ")) from None
        raise DefenceError(f"{raw['kind']}: {where}: {first['msg']} (got {first['input']!r})") from None


def check_defence(cfg: Defence, input_shape: tuple[int, ...], bounds: tuple[float, float]) -> None:
    """Raise `DefenceError` when `cfg` cannot apply to per-sample inputs of `input_shape` within `bounds`."""
    if cfg.kind in ("spatial_smoothing", "jpeg", "tvm") and len(input_shape) != 3:
        raise DefenceError(f"{cfg.kind} needs images (C, H, W); the inputs have shape {tuple(input_shape)}")
    if cfg.kind == "jpeg" and (float(bounds[0]), float(bounds[1])) not in JPEG_BOUNDS:
        raise DefenceError(f"jpeg needs data bounds (0, 1) or (0, 255) (8-bit pixels); got {tuple(bounds)}")


def _art() -> Any:
    return importlib.import_module("adapters.art_services")


def describe() -> list[dict[str, str]]:
    """One row per defence for docs: kind, ART class, where the forward runs, gradient modes, parameters."""
    rows = []
    for kind, cls in DEFENCE_CLASSES.items():
        params = {n: f.default for n, f in cls.model_fields.items() if n not in Defence.model_fields}
        rows.append(
            {
                "kind": kind,
                "art_class": _art().DEFENCES[kind][0],
                "forward": "torch (matches ART)" if cls.torch_forward else "ART (numpy, on the host)",
                "gradients": ", ".join(cls.gradients()),
                "parameters": ", ".join(f"{n}={v}" for n, v in params.items()),
                "what": cls.summary,
            }
        )
    return rows


def describe_markdown() -> str:
    """`describe()` as a markdown table."""
    rows = describe()
    head = list(rows[0])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r[h] for h in head) + " |" for r in rows]
    return "\n".join(lines) + "\n"


# --- torch implementations ----------------------------------------------------------------------------------


def squeeze(x: torch.Tensor, bit_depth: int, bounds: tuple[float, float]) -> torch.Tensor:
    """ART's FeatureSqueezing in torch: normalise in x's dtype, round on 2**bit_depth - 1 steps in float64."""
    lo, hi = bounds
    levels = float(2**bit_depth - 1)
    unit = ((x - lo) / (hi - lo)).double()
    return (torch.round(unit * levels) / levels * (hi - lo) + lo).to(x.dtype)


def _mirror(n: int, window: int, device: torch.device) -> torch.Tensor:
    """Indices of a length-n axis padded for a sliding window the way scipy's median_filter(mode='reflect')
    pads it: half-sample symmetric (d c b a | a b c d | d c b a), repeated for windows wider than the axis;
    the window's centre is at window // 2, so even windows reach one further back than forward."""
    start = -(window // 2)
    idx = torch.arange(start, start + n + window - 1, device=device) % (2 * n)
    return torch.where(idx >= n, 2 * n - 1 - idx, idx)


def median_smooth(x: torch.Tensor, window: int, bounds: tuple[float, float]) -> torch.Tensor:
    """ART's SpatialSmoothing (scipy median_filter over H, W, mode='reflect') in torch, differentiable: the
    gradient flows to the median element. For even windows the upper of the two middle values, as scipy."""
    h, w = x.shape[-2:]
    padded = x[..., _mirror(h, window, x.device), :][..., _mirror(w, window, x.device)]
    windows = padded.unfold(-2, window, 1).unfold(-2, window, 1).flatten(-2)  # (..., h, w, window**2)
    median = windows.kthvalue(window * window // 2 + 1, dim=-1).values
    return median.clamp(bounds[0], bounds[1])


def gaussian_noise(x: torch.Tensor, sigma: float, bounds: tuple[float, float]) -> torch.Tensor:
    """x + sigma * N(0, 1), clipped to the bounds; drawn from torch's global CPU generator so that a seed gives
    the same noise on every device."""
    noise = torch.randn(x.shape, dtype=torch.float32).to(device=x.device, dtype=x.dtype)
    return (x + sigma * noise).clamp(bounds[0], bounds[1])


def thermometer(x: torch.Tensor, num_space: int, bounds: tuple[float, float]) -> torch.Tensor:
    """ART's ThermometerEncoding (channels first) in torch: level k of channel c (output channel c*num_space+k)
    is 1 where k == 0 or the normalised value exceeds k/num_space, else 0."""
    lo, hi = bounds
    unit = (x.clamp(lo, hi) - lo) / (hi - lo)
    levels = [torch.ones_like(unit)] + [(unit > k / num_space).to(x.dtype) for k in range(1, num_space)]
    out = torch.stack(levels, dim=2)  # (N, C, num_space, ...)
    return out.flatten(1, 2)


class _Bpda(torch.autograd.Function):
    """The defence forward (no graph); backward the defence's BPDA estimate of the incoming gradient."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, pre: Preprocess) -> torch.Tensor:
        ctx.pre = pre
        ctx.save_for_backward(x)
        with torch.no_grad():
            return pre.transform(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (x,) = ctx.saved_tensors
        return ctx.pre.estimate(x, grad), None


class Preprocess(nn.Module):
    """The defence as a layer, differentiated as `cfg.gradient` says; float inputs in `bounds` (N, C, ...) on
    any device, outputs of the input's dtype on its device (shape `cfg.out_shape`)."""

    def __init__(self, cfg: Defence, bounds: tuple[float, float] = (0.0, 1.0)):
        super().__init__()
        self.cfg = cfg
        self.bounds = (float(bounds[0]), float(bounds[1]))
        self._art: Any = None

    @property
    def art(self) -> Any:
        """ART's preprocessor for this defence (built on first use: importing ART takes seconds)."""
        if self._art is None:
            self._art = _art().art_preprocessor(self.cfg, self.bounds)
        return self._art

    def out_channels(self, channels: int) -> int:
        return self.cfg.out_channels(channels)

    def extra_repr(self) -> str:
        return f"{self.cfg.label}, bounds={self.bounds}"

    def transform(self, x: torch.Tensor) -> torch.Tensor:
        """The defence itself; differentiable by autograd where it has a torch implementation."""
        cfg = self.cfg
        if isinstance(cfg, FeatureSqueezing):
            return squeeze(x, cfg.bit_depth, self.bounds)
        if isinstance(cfg, SpatialSmoothing):
            return median_smooth(x, cfg.window_size, self.bounds)
        if isinstance(cfg, GaussianNoise):
            return gaussian_noise(x, cfg.sigma, self.bounds)
        if isinstance(cfg, Thermometer):
            return thermometer(x, cfg.num_space, self.bounds)
        seed = int(torch.randint(0, 2**31 - 1, (1,))) if cfg.randomised else None  # numpy draws seeded from torch
        out = _art().apply_numpy(self.art, x.detach().cpu().numpy(), seed)
        return torch.from_numpy(out).to(device=x.device, dtype=x.dtype)

    def estimate(self, x: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
        """The BPDA backward: ART's estimate_gradient, or the identity (per level, summed, for thermometer)."""
        if self.cfg.bpda == "estimate":
            est = _art().estimate_gradient(self.art, x.detach().cpu().numpy(), grad.detach().cpu().numpy())
            return torch.from_numpy(est).to(device=grad.device, dtype=grad.dtype)
        if isinstance(self.cfg, Thermometer):
            levels = grad.unflatten(1, (x.shape[1], self.cfg.num_space))
            return levels.sum(2) / (self.bounds[1] - self.bounds[0])
        return grad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.cfg.uses_bpda:
            return _Bpda.apply(x, self)
        return self.transform(x)


class Defended(nn.Module):
    """`net` behind the defence: the net a SharedModel wraps. With gradient eot, the logits are the mean over
    `eot_samples` independent draws of net(defence(x)) (the net runs once per draw).

    A plain nn.Module (not nn.Sequential) so that toolkits walking Sequential children call it as a whole.
    """

    def __init__(self, net: nn.Module, cfg: Defence, bounds: tuple[float, float] = (0.0, 1.0)):
        super().__init__()
        self.defence = Preprocess(cfg, bounds)
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cfg = self.defence.cfg
        if cfg.gradient != "eot":
            return self.net(self.defence(x))
        total = self.net(self.defence(x))
        for _ in range(cfg.eot_samples - 1):
            total = total + self.net(self.defence(x))
        return total / cfg.eot_samples


def defend(net: nn.Module, cfg: Defence | dict[str, Any], bounds: tuple[float, float] = (0.0, 1.0)) -> Defended:
    """`net` with the defence `cfg` (a config or what a scenario wrote) as its first layer."""
    if isinstance(cfg, dict):
        cfg = parse_defence(cfg)
    return Defended(net, cfg, bounds)
