"""PGD-10 on a GPU: samples/s per toolkit through the bridge, fp32 vs bf16, against a hand-written PyTorch loop, and
the share of the GPU's peak FLOP/s each reaches.

    .venv/bin/python bench/gpu.py                                  # a CUDA machine: a few minutes
    .venv/bin/python bench/gpu.py --quick                          # the same code path on the CPU, tiny
    .venv/bin/python bench/gpu.py --train-epochs 5 --cifar DIR     # and robust accuracy fp32 vs bf16

CIFAR-shaped (3x32x32, 10 classes) ResNet-18 and WRN-16-4 from the zoo, random weights on random images unless
--train-epochs: timing needs no accuracy. PGD linf, eps 8/255, step 2/255, no random start, through
`bridge.studies.evasion.cell.attack` (the call a study makes: eval mode, frozen weights, counters) with the model's
precision fp32 and bf16 (`SharedModel`: autocast bf16, channels-last on CUDA), and a hand-written PyTorch PGD loop
on the same network at the same precision: the ceiling. Each runs one warm-up batch, then --reps timed runs over
--samples (CUDA synchronized around each); the median is reported.

FLOP/s: the network's forward FLOPs on one sample (torch.utils.flop_counter.FlopCounterMode) x 2 per step x steps x
samples/s. With frozen weights a step is one forward and one backward to the input only, about a second forward:
an approximation, which also leaves out a toolkit's extra passes. Its share of the GPU's dense peak: bf16 runs
against the bf16 peak, fp32 runs against the TF32 peak when cuDNN may use TF32 (PyTorch's default for
convolutions), else the FP32 peak.

Robust accuracy fp32 vs bf16 (the issue's claim: within 0.5 points) means something only for trained models: with
--train-epochs N and --cifar DIR (holding CIFAR-10's python tarball or its extracted folder) each model is trained
by the bridge first (untimed) and the first --samples test images are attacked; without, it is not printed.
"""

from __future__ import annotations

import argparse
import datetime
import functools
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from overhead import bridged, timed

EPS, STEP, STEPS = 8 / 255, 2 / 255, 10
TOOLKITS = ("art", "foolbox", "torchattacks")
SHAPE, CLASSES = (3, 32, 32), 10

# (label, zoo architecture, options) per model; --quick narrows them so that the CPU finishes in seconds.
MODELS = (("ResNet-18", "resnet18", {"width": 64}), ("WRN-16-4", "wide_resnet", {"depth": 16, "widen": 4}))
QUICK_MODELS = (("ResNet-18 width 8", "resnet18", {"width": 8}), ("WRN-16-1", "wide_resnet", {"depth": 16, "widen": 1}))

# Dense peak TFLOP/s (bf16, tf32, fp32) from NVIDIA's datasheets, the "with sparsity" tensor-core figures halved;
# matched in this order, case-insensitively, against torch's device name ("NVIDIA H100 80GB HBM3" is the SXM5 card).
PEAKS = (
    ("H100 PCIe", (756.0, 378.0, 51.0)),
    ("H100 NVL", (835.5, 417.5, 60.0)),
    ("H100", (989.5, 494.5, 67.0)),  # SXM5
    ("H200 NVL", (835.5, 417.5, 60.0)),
    ("H200", (989.5, 494.5, 67.0)),  # SXM
    ("A100", (312.0, 156.0, 19.5)),  # SXM4 and PCIe, 40 and 80 GB
)

Method = Callable[..., torch.Tensor]  # (model, x, y, steps, batch) -> x_adv


def hand_pgd(model, x: torch.Tensor, y: torch.Tensor, steps: int, batch: int) -> torch.Tensor:
    """PGD linf as one writes it in PyTorch, the ceiling: the model's network as the bridge lays it out (channels-last
    under bf16 on CUDA), eval mode, weights out of autograd, autocast bf16 when the model's precision is bf16, the
    loss summed over the batch, a sign step, projection onto the eps ball and [0, 1]."""
    net, bf16 = model.net, model.precision == "bf16"
    chunks = []
    with model.eval_mode(), model.frozen():
        for i in range(0, len(x), batch):
            x0, yb = x[i : i + batch], y[i : i + batch]
            xa = x0.clone()
            for _ in range(steps):
                xa.requires_grad_(True)
                with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bf16):
                    logits = net(xa)
                loss = torch.nn.functional.cross_entropy(logits.float(), yb, reduction="sum")
                (grad,) = torch.autograd.grad(loss, xa)
                xa = torch.min(torch.max(xa.detach() + STEP * grad.sign(), x0 - EPS), x0 + EPS).clamp(0.0, 1.0)
            chunks.append(xa)
    return torch.cat(chunks)


def methods() -> dict[str, Method]:
    """The hand-written loop, then each toolkit through the bridge's cell."""
    return {"hand-written": hand_pgd} | {tk: functools.partial(bridged, tk, eps=EPS, step=STEP) for tk in TOOLKITS}


def forward_flops(net: torch.nn.Module, sample: torch.Tensor) -> int:
    """FLOPs of one forward pass on `sample` (a batch of one), as torch's FlopCounterMode counts them."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        net.eval()(sample)
    return counter.get_total_flops()


def peaks(device: torch.device, given: list[float] | None) -> tuple[str, dict[str, float] | None]:
    """(where the figures come from, the dense peak TFLOP/s per precision) for `device`; None where unknown."""
    if given:
        return "--peak-tflops", {"bf16": given[0], "fp32": given[1]}
    if device.type != "cuda":
        return "unknown for a CPU; give --peak-tflops BF16 FP32", None
    name = torch.cuda.get_device_name(device)
    for key, (bf16, tf32, fp32) in PEAKS:
        if key.lower() in name.lower():
            tf = torch.backends.cudnn.allow_tf32
            figures = {"bf16": bf16, "fp32": tf32 if tf else fp32}
            return f"datasheet, {key}, fp32 runs as {'TF32' if tf else 'FP32'}", figures
    return f"unknown for {name}; give --peak-tflops BF16 FP32", None


def data(args: argparse.Namespace, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, object]:
    """(x, y, the CIFAR-10 train split or None): the first --samples test images when training, else random ones."""
    if not args.train_epochs:
        gen = torch.Generator().manual_seed(0)
        x = torch.rand(args.samples, *SHAPE, generator=gen)
        return x.to(device), torch.randint(0, CLASSES, (args.samples,), generator=gen).to(device), None
    from bridge.data.config import DataConfig
    from bridge.data.dataset import load_split, select

    cfg = DataConfig(dataset="cifar10", root=args.cifar)
    test = select(load_split(cfg, "test", log=lambda _: None), args.samples, seed=0)
    return test.x.to(device), test.y.to(device), load_split(cfg, "train", log=lambda _: None)


def weights(arch: str, options: dict, train, args: argparse.Namespace, device: torch.device) -> dict:
    """The network's state: random (seeded), or trained by the bridge for --train-epochs on CIFAR-10."""
    from bridge.models.build import build_model
    from bridge.models.config import ModelConfig
    from bridge.models.zoo import build

    if train is None:
        torch.manual_seed(0)
        return build(arch, SHAPE, CLASSES, options=options).state_dict()
    cfg = ModelConfig(arch=arch, options=options,
                      training={"epochs": args.train_epochs, "batch_size": 256, "seed": 0})  # fmt: skip
    net, _ = build_model(cfg, train, log=lambda _: None, device=device)
    return net.state_dict()


def shared(arch: str, options: dict, state: dict, precision: str, device: torch.device):
    """A fresh network with `state` in a SharedModel at `precision` (bf16 lays it out channels-last on CUDA)."""
    from bridge.models.shared import SharedModel
    from bridge.models.zoo import build

    net = build(arch, SHAPE, CLASSES, options=options)
    net.load_state_dict(state)
    return SharedModel(net, SHAPE, CLASSES, device=device, name=arch, precision=precision)


def robust_accuracy(model, x: torch.Tensor, y: torch.Tensor, x_adv: torch.Tensor, batch: int) -> float:
    """As a study reports it (`evaluate_cell`): correct on x and on x_adv, judged by the model at its precision."""
    from bridge.studies.evasion.metrics import evaluate_cell

    clean, adv = model.predict(x, batch).argmax(1), model.predict(x_adv, batch).argmax(1)
    cell = evaluate_cell(x, x_adv, y, clean, adv, norm="linf", eps=EPS, fixed_budget=True, bounds=model.bounds)
    return cell.metrics["robust_accuracy"]


def bench_model(label: str, arch: str, options: dict, args: argparse.Namespace, device: torch.device,
                peak: dict[str, float] | None, x: torch.Tensor, y: torch.Tensor, train) -> None:  # fmt: skip
    """Every method at both precisions on one model: a table, then bf16 / fp32 per method."""
    state = weights(arch, options, train, args, device)
    flops = forward_flops(shared(arch, options, state, "fp32", device).net, x[:1])
    print(f"\n{label} ({arch} {options}): {flops / 1e9:.3f} GFLOP per forward; PGD-{args.steps} linf eps 8/255, "
          f"{len(x)} samples, batch {args.batch}, median of {args.reps}")  # fmt: skip
    head = f"  {'precision':9} {'method':13} {'samples/s':>10} {'TFLOP/s':>8} {'of peak':>8} {'/ hand':>7}"
    print(head + f" {'max|x-hand|':>11}" + (f" {'robust acc':>10}" if train is not None else ""))
    rates: dict[tuple[str, str], float] = {}
    accuracy: dict[tuple[str, str], float] = {}
    for precision in ("fp32", "bf16"):
        model, hand = shared(arch, options, state, precision, device), None
        for name, method in methods().items():
            method(model, x[: args.batch], y[: args.batch], 1, args.batch)  # warm-up: imports, cuDNN, allocator
            times = []
            for _ in range(args.reps):
                seconds, x_adv = timed(method, model, x, y, args.steps, args.batch)
                times.append(seconds)
            rate = len(x) / statistics.median(times)
            rates[precision, name] = rate
            hand = x_adv if hand is None else hand
            tflops = rate * args.steps * 2 * flops / 1e12
            share = f"{tflops / peak[precision]:8.1%}" if peak else f"{'n/a':>8}"
            ratio, diff = rate / rates[precision, "hand-written"], float((x_adv - hand).abs().max())
            line = f"  {precision:9} {name:13} {rate:10.1f} {tflops:8.3f} {share} {ratio:7.2f} {diff:11.1e}"
            if train is not None:
                accuracy[precision, name] = robust_accuracy(model, x, y, x_adv, args.batch)
                line += f" {accuracy[precision, name]:10.2%}"
            print(line, flush=True)
    for name in methods():
        gain = f"  bf16 / fp32 {name:13} {rates['bf16', name] / rates['fp32', name]:5.2f}x"
        if train is not None:
            points = 100 * (accuracy["bf16", name] - accuracy["fp32", name])
            gain += f"   robust accuracy bf16 - fp32: {points:+.2f} points"
        print(gain)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=1024)
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--steps", type=int, default=STEPS)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--peak-tflops", type=float, nargs=2, metavar=("BF16", "FP32"),
                        help="dense peak TFLOP/s for bf16 and for fp32 runs (TF32 where cuDNN uses it)")  # fmt: skip
    parser.add_argument("--train-epochs", type=int, default=0, help="train each model first (needs --cifar)")
    parser.add_argument("--cifar", metavar="DIR", help="CIFAR-10's folder, for --train-epochs")
    parser.add_argument("--quick", action="store_true", help="CPU, tiny models, 16 samples, 1 rep: the path only")
    args = parser.parse_args()
    if args.train_epochs and not args.cifar:
        parser.error("--train-epochs needs --cifar DIR (CIFAR-10's python tarball or its folder)")
    if args.quick:
        args.samples, args.batch, args.reps = min(args.samples, 16), min(args.batch, 16), 1
        device, models = torch.device("cpu"), QUICK_MODELS
    elif torch.cuda.is_available():
        device, models = torch.device("cuda"), MODELS
    else:
        print("bench/gpu.py: no CUDA device here; --quick runs the same code path on the CPU", file=sys.stderr)
        sys.exit(2)
    source, peak = peaks(device, args.peak_tflops)
    import art
    import foolbox
    import torchattacks

    machine = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{platform.machine()} CPU"
    versions = f"torch {torch.__version__}, ART {art.__version__}, Foolbox {foolbox.__version__}"
    print(f"{machine}, {datetime.date.today()}; {versions}, torchattacks {torchattacks.__version__}, "
          f"{torch.get_num_threads()} threads")  # fmt: skip
    print(f"peak TFLOP/s: {peak or 'n/a'} ({source})")
    if device.type == "cpu":
        print("CPU run (--quick): these figures say nothing about a GPU; they only show that the code path runs.")
    if not args.train_epochs:
        print("random weights on random images: robust accuracy is not compared (--train-epochs N --cifar DIR)")
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        os.environ.setdefault("ADVBRIDGE_CACHE", str(Path(tmp) / "cache"))
        x, y, train = data(args, device)
        for label, arch, options in models:
            bench_model(label, arch, options, args, device, peak, x, y, train)
    print(f"\ntotal {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
