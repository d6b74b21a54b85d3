"""The quickstart through the local executor and through Ray with 2 workers, on this machine.

    .venv/bin/python bench/executors.py [SCENARIO] [--workers 2]

Both runs start from a warm model cache (the model is trained first, untimed) and a fresh MLflow store, as a
user's second run would; each is the whole `advbridge run` command (Python start, Ray start and stop included).
Prints the wall time of each, their ratio, the attack time summed over the cells, and how many cells gave other
numbers (CPU float sums depend on the thread count: with one thread per Ray worker against the local run's N,
a borderline attack such as torchattacks' DeepFool can differ by a sample or two).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from mlflow.tracking import MlflowClient

ADVBRIDGE = str(Path(sys.executable).parent / "advbridge")
NUMBERS = ("robust_accuracy", "attack_success_rate", "l2_mean", "forward_calls", "backward_calls")


def run(scenario: str, env: dict[str, str], *extra: str) -> float:
    start = time.perf_counter()
    subprocess.run([ADVBRIDGE, "run", scenario, "--no-progress", *extra], env=env, check=True, capture_output=True)
    return time.perf_counter() - start


def cells(uri: str, experiment: str) -> dict[str, tuple]:
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name(experiment).experiment_id],
                              "tags.`advbridge.kind` = 'evasion.attack'", max_results=5000)  # fmt: skip
    return {r.data.tags["advbridge.key"]: (r.data.metrics["wall_time_s"], [r.data.metrics.get(m) for m in NUMBERS])
            for r in runs}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("scenario", nargs="?", default="scenarios/quickstart.yaml")
    parser.add_argument("--workers", type=int, default=2, help="Ray workers (one CPU each)")
    args = parser.parse_args()
    name = yaml.safe_load(Path(args.scenario).read_text())["name"]
    with tempfile.TemporaryDirectory() as tmp:
        uri = f"sqlite:///{Path(tmp) / 'mlflow.db'}"
        env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "ADVBRIDGE_CACHE": str(Path(tmp) / "cache")}
        run(args.scenario, env, "--set", "tracking.experiment=warm-up")  # trains the model into the cache
        local = run(args.scenario, env, "--set", "tracking.experiment=local")
        ray = run(args.scenario, env, "--executor", "ray", "--set", "tracking.experiment=ray",
                  "--set", f"ray.cpus_per_cell={os.cpu_count() // args.workers}")  # fmt: skip
        a, b = cells(uri, "local"), cells(uri, "ray")
    attack = sum(t for t, _ in a.values())
    differ = [k for k in a if a[k][1] != b[k][1]]
    print(f"{name}: {len(a)} cells on {os.cpu_count()} cores (warm model cache, fresh store)")
    print(f"  local executor:           {local:6.1f} s   (attacks {attack:.1f} s)")
    print(f"  ray, {args.workers} workers:           {ray:6.1f} s   (attacks {sum(t for t, _ in b.values()):.1f} s)")
    print(f"  ray / local:              {ray / local:6.2f}")
    print(f"  cells with other numbers: {len(differ)} of {len(a)}")


if __name__ == "__main__":
    main()
