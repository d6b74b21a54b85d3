"""The CPU figure behind `batch_size: auto`'s fixed default: a PGD cell's throughput per batch size, per toolkit.

    .venv/bin/python bench/batch_size.py [--samples 540] [--steps 10] [--reps 3] [--threads 1]

The bridge's cell (`bridge.studies.evasion.cell.attack`) runs PGD linf (eps 0.1, step 0.01, no random start) on the
digits test samples with the digits CNN untrained (the weights do not change the work of a fixed number of steps),
at each batch size in turn, interleaved over toolkits and batches for `--reps` rounds. Prints the median samples/s
(and the range) per toolkit and batch size.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

BATCHES = (16, 32, 64, 128, 256, 540)
TOOLKITS = ("torchattacks", "art", "foolbox")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=540)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    from bridge.attacks.adapter import get_adapter
    from bridge.attacks.spec import resolve_attack
    from bridge.data.dataset import load_split, select
    from bridge.models.shared import SharedModel
    from bridge.models.zoo import build
    from bridge.studies.evasion.cell import attack

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    data = select(load_split("digits", "test"), args.samples, seed=0)
    model = SharedModel(build("small_cnn", data.input_shape, data.n_classes), data.input_shape, data.n_classes)
    seconds: dict[tuple[str, int], list[float]] = {(t, b): [] for t in TOOLKITS for b in BATCHES}
    for _ in range(args.reps):
        for toolkit in TOOLKITS:
            for batch in BATCHES:
                spec = resolve_attack({"attack": "pgd", "norm": "linf", "eps": 0.1, "steps": args.steps,
                                       "step_size": 0.01, "random_start": False, "toolkit": toolkit,
                                       "batch_size": batch})  # fmt: skip
                translation = get_adapter(toolkit).translate(spec, data.n_classes)
                start = time.perf_counter()
                attack(spec, translation, model, data.x, data.y, None)
                seconds[toolkit, batch].append(time.perf_counter() - start)
    print(f"{args.samples} samples, PGD-{args.steps}, {torch.get_num_threads()} thread(s), {args.reps} rounds")
    for (toolkit, batch), times in seconds.items():
        rate = [args.samples / t for t in times]
        print(f"{toolkit:13s} batch {batch:4d}: {statistics.median(rate):6.0f} samples/s "
              f"({min(rate):.0f} to {max(rate):.0f})")  # fmt: skip


if __name__ == "__main__":
    main()
