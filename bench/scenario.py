"""Time the quickstart end to end as a new user meets it: fresh model cache, fresh MLflow store.

.venv/bin/python bench/quickstart.py    # prints wall time and the per-cell attack times
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import yaml
from mlflow.tracking import MlflowClient


def main(scenario: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        uri = f"sqlite:///{Path(tmp) / 'mlflow.db'}"
        env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "ADVBRIDGE_CACHE": str(Path(tmp) / "cache")}
        cmd = [str(Path(sys.executable).parent / "advbridge"), "run", scenario, "--no-progress"]
        start = time.perf_counter()
        subprocess.run(cmd, env=env, check=True, capture_output=True)
        wall = time.perf_counter() - start
        client = MlflowClient(uri)
        runs = client.search_runs(
            [client.get_experiment_by_name(yaml.safe_load(Path(scenario).read_text())["name"]).experiment_id]
        )
        cells = pd.DataFrame(
            {**r.data.tags, "wall_time_s": r.data.metrics["wall_time_s"]}
            for r in runs
            if "mlflow.parentRunId" in r.data.tags and "wall_time_s" in r.data.metrics
        )
    print(f"{scenario} end to end: {wall:.1f} s on {os.cpu_count()} cores (training included)")
    print(f"attack time, all cells: {cells['wall_time_s'].sum():.1f} s")
    print(cells.pivot_table(index=["attack", "norm"], columns="toolkit", values="wall_time_s", aggfunc="sum").round(2))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "scenarios/quickstart.yaml")
