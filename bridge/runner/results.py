"""A study's results as Python objects, read from the store alone (nothing is written): the comparison table, the
checks, one long per-sample table over every cell, and a cell's adversarial examples.

```python
from bridge import open_study
study = open_study()                      # the newest study in the default store, or open_study(RUN_ID, uri)
study.per_sample.groupby(["attack", "toolkit"])["robust"].mean()
study.examples(study.table["run_id"].iloc[0])["x_adv"]
```
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bridge.core.errors import ScenarioError
from bridge.engine.result import Result
from bridge.engine.store import Store
from bridge.runner.aggregate import latest_study, read_study
from bridge.studies.evasion.export import EXAMPLE_COLUMNS, EXAMPLES_FILE

# What tells one cell of a study from another: its kind (`study`), what it attacked and how (`source` where the table
# has it: the model the examples came from).
IDENTITY = ("study", "model", "defence", "attack", "norm", "eps", "targeted", "variant", "evaluation", "source",
            "toolkit")  # fmt: skip
CELL_KINDS = ("attack", "transfer")


def identity(table: pd.DataFrame) -> list[str]:
    """The identity columns `table` has, in the table's order."""
    return [c for c in IDENTITY if c in table.columns]


@dataclass
class StudyResults:
    """One study as recorded: `table` (every cell a row, with its `run_id`), `checks`, `per_sample`, `examples`."""

    run_id: str
    experiment: str
    n_samples: int
    table: pd.DataFrame  # the comparison table as `advbridge aggregate` computes it (attrs as `run_scenario` sets)
    checks: pd.DataFrame
    results: list[Result]  # every finished task's result (victims, cells, transfers, detector)
    plan: dict[str, Any]  # the recorded `study/plan.json`
    store: Store

    @property
    def uri(self) -> str:
        return self.store.uri

    @cached_property
    def by_run(self) -> dict[str, Result]:
        return {r.run_id: r for r in self.results if r.run_id}

    @cached_property
    def clean(self) -> dict[str, float]:
        """Clean accuracy per model (its victim's probe), in plan order."""
        return {r.row["model"]: r.row["clean_accuracy"] for r in self.results if r.kind == "victim" and r.ok}

    @cached_property
    def per_sample(self) -> pd.DataFrame:
        """Every attack and transfer cell's per-sample table, one row per (cell, sample): the cell's identity
        columns and `run_id`, `sample` (the position in the evaluation set), then the per-sample columns."""
        columns = [*identity(self.table), "run_id"]
        frames = []
        for row in self.table.to_dict("records"):
            found = self.by_run.get(row["run_id"]) if isinstance(row["run_id"], str) else None
            if found is None or found.per_sample is None:
                continue
            ps = found.per_sample.reset_index(drop=True)
            head = pd.DataFrame({c: [row[c]] * len(ps) for c in columns} | {"sample": np.arange(len(ps))})
            frames.append(pd.concat([head, ps], axis=1))
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=[*columns, "sample"])

    def cell(self, cell: str) -> Result:
        """The result of one attack or transfer cell, by its run id or its unique run name (label)."""
        cells = [r for r in self.results if r.kind in CELL_KINDS]
        found = [r for r in cells if r.run_id == cell] or [r for r in cells if r.label == cell]
        if not found:
            raise ScenarioError(f"{cell}: no cell of study {self.run_id} has this run id or run name")
        if len(found) > 1:
            raise ScenarioError(f"{cell}: {len(found)} cells of study {self.run_id} have this name; give its run id")
        return found[0]

    def examples(self, cell: str) -> dict[str, np.ndarray]:
        """A cell's adversarial examples: `x_adv` and per sample `label`, `target` (-1: untargeted), `clean_pred`,
        `adv_pred`, `success`. From the cell's `examples.npz` (`export: npz`), else its stored result (a transfer's
        examples are its source cell's, judged by this model)."""
        result = self.cell(cell)
        if result.state != "ok":
            raise ScenarioError(f"{result.label} ({result.run_id}): the cell is {result.state}: it has no examples")
        if exported := self._exported(result.run_id):
            return exported
        source = self._source(result)
        x_adv = source.arrays.get("x_adv") if source is not None else None
        if x_adv is None and source is not None and (exported := self._exported(source.run_id)):
            x_adv = exported["x_adv"]
        if x_adv is None:
            raise ScenarioError(
                f"{result.label} ({result.run_id}): the study did not keep this cell's examples (it keeps those its "
                "transfers, detector or parity check read); `export: npz` keeps every cell's examples"
            )
        return {"x_adv": x_adv, **{c: result.per_sample[c].to_numpy() for c in EXAMPLE_COLUMNS}}

    def _exported(self, run_id: str) -> dict[str, np.ndarray] | None:
        """The arrays of `examples.npz` on child run `run_id`, or None when it has none."""
        client = self.store.client
        if EXAMPLES_FILE not in {a.path for a in client.list_artifacts(run_id)}:
            return None
        with tempfile.TemporaryDirectory() as tmp:
            with np.load(Path(client.download_artifacts(run_id, EXAMPLES_FILE, tmp)), allow_pickle=False) as f:
                return {name: f[name] for name in f.files}

    def _source(self, result: Result) -> Result | None:
        """The result holding a cell's examples: itself, or for a transfer the cell it transferred."""
        if result.kind != "transfer":
            return result
        task = next((t for t in self.plan["tasks"] if t["key"] == result.key), {})
        by_key = {r.key: r for r in self.results}
        return next((by_key[k] for k in task.get("depends", []) if k in by_key), None)


def open_study(run_id: str = "latest", uri: str | None = None) -> StudyResults:
    """Study `run_id` (a parent run id, or `latest`: the newest study) of the store at `uri` (default: as the
    command line's `--uri`: $MLFLOW_TRACKING_URI, else sqlite:///mlruns/mlflow.db), read without writing."""
    from bridge.runner.preflight import checked_uri

    uri = checked_uri(uri, "uri")
    run_id = latest_study(uri) if run_id == "latest" else run_id
    study = read_study(uri, run_id)
    table = study.table()
    return StudyResults(run_id, study.experiment, int(table.attrs["n_samples"]), table, study.checks(),
                        study.results, study.plan, study.store)  # fmt: skip
