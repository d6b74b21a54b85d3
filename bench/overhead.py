"""What the bridge costs: each toolkit's PGD through advbridge vs the same toolkit called directly, and the share of a
study's wall time that is not attacking.

    .venv/bin/python bench/overhead.py [--samples 540] [--steps 40] [--reps 5] [--study scenarios/quickstart.yaml]

Bridge vs direct: the digits CNN (trained into a temporary cache first, untimed), the same samples, PGD linf without
random start, the bridge's call (`bridge.studies.evasion.cell.attack`: eval mode, frozen weights, counters) and the
toolkit's own API on the bare network (as a user writes it: weights left in autograd), interleaved A/B for `--reps`
rounds. Prints the median time ratio bridge / direct per toolkit and the largest difference between their examples.

Study overhead (`--study`): the scenario run in this process on a fresh store, once to train the model into the
cache, then `--reps` times measured: each parent run's wall time minus the sum of its cells' attack times
(`wall_time_s`, which each cell records), over that sum; and the median share.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

EPS, STEP = 0.1, 0.01


def direct(
    toolkit: str, net: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int, batch: int
) -> torch.Tensor:
    """PGD linf with the toolkit's own API on the bare network, every argument explicit."""
    net.eval()
    if toolkit == "art":
        from art.attacks.evasion import ProjectedGradientDescent
        from art.estimators.classification import PyTorchClassifier

        clf = PyTorchClassifier(model=net, loss=torch.nn.CrossEntropyLoss(), input_shape=tuple(x.shape[1:]),
                                nb_classes=10, optimizer=None, clip_values=(0.0, 1.0), channels_first=True,
                                preprocessing_defences=None, postprocessing_defences=None, preprocessing=(0.0, 1.0),
                                device_type="cpu")  # fmt: skip
        pgd = ProjectedGradientDescent(clf, norm=np.inf, eps=EPS, eps_step=STEP, decay=None, max_iter=steps,
                                       targeted=False, num_random_init=0, batch_size=batch, random_eps=False,
                                       summary_writer=False, verbose=False)  # fmt: skip
        return torch.from_numpy(pgd.generate(x.numpy(), y.numpy()))
    if toolkit == "foolbox":
        import foolbox

        model = foolbox.PyTorchModel(net, bounds=(0.0, 1.0), preprocessing=None)
        pgd = foolbox.attacks.LinfPGD(rel_stepsize=None, abs_stepsize=STEP, steps=steps, random_start=False)
        return torch.cat([pgd(model, x[i : i + batch], y[i : i + batch], epsilons=EPS)[1]
                          for i in range(0, len(x), batch)])  # fmt: skip
    import torchattacks

    pgd = torchattacks.PGD(net, eps=EPS, alpha=STEP, steps=steps, random_start=False)
    return torch.cat([pgd(x[i : i + batch], y[i : i + batch]) for i in range(0, len(x), batch)])


def bridged(
    toolkit: str, model, x: torch.Tensor, y: torch.Tensor, steps: int, batch: int, eps: float = EPS, step: float = STEP
) -> torch.Tensor:
    """PGD linf without random start through the evasion cell's call, as a study makes it."""
    from bridge.attacks.adapter import get_adapter
    from bridge.attacks.spec import resolve_attack
    from bridge.studies.evasion.cell import attack

    spec = resolve_attack({"attack": "pgd", "norm": "linf", "eps": eps, "steps": steps, "step_size": step,
                           "random_start": False, "toolkit": toolkit, "batch_size": batch})  # fmt: skip
    return attack(spec, get_adapter(toolkit).translate(spec, model.n_classes), model, x, y, None)[0]


def timed(fn, *args) -> tuple[float, torch.Tensor]:
    """Wall time of fn(*args) and its output; CUDA work queued before and by it is waited for (synchronize)."""
    sync = torch.cuda.synchronize if torch.cuda.is_initialized() else lambda: None
    sync()
    start = time.perf_counter()
    out = fn(*args)
    sync()
    return time.perf_counter() - start, out


def bridge_vs_direct(samples: int, steps: int, reps: int, batch: int) -> None:
    from bridge.data.dataset import load_split, select
    from bridge.models.build import build_model
    from bridge.models.config import ModelConfig
    from bridge.models.shared import SharedModel

    train = load_split("digits", "train")
    net, _ = build_model(ModelConfig(arch="small_cnn"), train, log=lambda _: None)
    model = SharedModel(net, train.input_shape, train.n_classes, device="cpu", name="small_cnn")
    data = select(load_split("digits", "test"), samples, seed=0)
    x, y = data.x, data.y
    print(f"PGD-{steps} linf eps={EPS} on the digits CNN, {len(x)} samples, batch {batch}, {reps} interleaved reps, "
          f"{torch.get_num_threads()} threads")  # fmt: skip
    for toolkit in ("art", "foolbox", "torchattacks"):
        ratios, diff = [], 0.0
        bridged(toolkit, model, x[:8], y[:8], 1, batch), direct(toolkit, net, x[:8], y[:8], 1, batch)  # warm-up
        for _ in range(reps):
            tb, xb = timed(bridged, toolkit, model, x, y, steps, batch)
            td, xd = timed(direct, toolkit, net, x, y, steps, batch)
            net.zero_grad(set_to_none=True)
            ratios.append(tb / td)
            diff = max(diff, float((xb - xd).abs().max()))
        print(f"  {toolkit:13s} bridge / direct: median {statistics.median(ratios):.3f} "
              f"(min {min(ratios):.3f}, max {max(ratios):.3f}); max |bridge - direct| = {diff:.1e}")  # fmt: skip


def study_overhead(scenario: str, reps: int) -> None:
    from mlflow.tracking import MlflowClient

    import bridge

    def once(experiment: str) -> tuple[float, float, int]:
        table = bridge.run_scenario(scenario, [f"tracking.experiment={experiment}"], log=lambda _: None)
        client = MlflowClient(table.attrs["tracking_uri"])
        parent = client.get_run(table.attrs["parent_run_id"])
        mine = f"tags.mlflow.parentRunId = '{parent.info.run_id}'"
        children = client.search_runs([table.attrs["experiment_id"]], mine, max_results=5000)
        attacks = sum(r.data.metrics.get("wall_time_s", 0.0) for r in children)
        return (parent.info.end_time - parent.info.start_time) / 1000, attacks, len(children)

    once("warm-up")  # trains the model into the cache
    shares = []
    for rep in range(reps):
        wall, attacks, n = once(f"measured-{rep}")
        shares.append((wall - attacks) / attacks)
        print(f"{scenario}: parent run {wall:.1f} s, attacks {attacks:.1f} s over {n} children, other "
              f"{wall - attacks:.2f} s: non-attack share {shares[-1]:.1%} of the attack time")  # fmt: skip
    print(f"median non-attack share over {reps} runs: {statistics.median(shares):.1%}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=540)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--study", metavar="SCENARIO", help="also measure a study's non-attack share")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        os.environ.setdefault("ADVBRIDGE_CACHE", str(Path(tmp) / "cache"))
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{Path(tmp) / 'mlflow.db'}"
        bridge_vs_direct(args.samples, args.steps, args.reps, args.batch)
        if args.study:
            study_overhead(args.study, args.reps)


if __name__ == "__main__":
    main()
