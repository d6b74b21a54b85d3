"""The result of one task: plain data, persisted with its child run and read back by a later process.

`result.json` holds the status, the table row, the metrics, small tables and where and when the work ran;
`result.npz` (compressed) holds the per-sample table column by column and any arrays a later step needs (the
adversarial examples, where a transfer, the detector or the parity check reads them). Both are written and read
here, so what a resumed or re-aggregated study computes from the store is exactly what the first run computed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

JSON_FILE, ARRAYS_FILE = "result.json", "result.npz"
_PER_SAMPLE, _ARRAY = "per_sample/", "array/"


@dataclass
class Result:
    key: str
    kind: str
    label: str
    status: str  # ok | failed: <why> | unsupported: <why> | skipped: <why>
    params: dict[str, Any] = field(default_factory=dict)  # the task's params: what defined the work
    row: dict[str, Any] = field(default_factory=dict)  # the task's row in the study's tables (JSON-able)
    metrics: dict[str, float] = field(default_factory=dict)  # logged as the child run's metrics
    per_sample: pd.DataFrame | None = None
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    tables: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # small tables, as records
    files: dict[str, str | bytes] = field(default_factory=dict)  # extra artifacts (a PNG), beside the result
    error: str = ""  # the traceback of a failure
    started: float = 0.0  # epoch seconds: the span of the work itself (a child run's start and end)
    ended: float = 0.0
    where: dict[str, str] = field(default_factory=dict)  # host, pid, device, executor, GPU ids
    run_id: str = ""  # the child run it was recorded as

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def state(self) -> str:
        """ok, failed, unsupported or skipped: the status without its reason."""
        return self.status.split(":")[0]

    def save(self, folder: Path) -> list[Path]:
        """Write result.json and result.npz into `folder`; returns the paths written."""
        meta = {
            "key": self.key, "kind": self.kind, "label": self.label, "status": self.status, "params": self.params,
            "row": self.row,
            "metrics": self.metrics, "tables": self.tables, "error": self.error, "started": self.started,
            "ended": self.ended, "where": self.where,
            "per_sample": None if self.per_sample is None else {
                "index": self.per_sample.index.name, "columns": list(self.per_sample.columns)},
        }  # fmt: skip
        paths = [folder / JSON_FILE]
        paths[0].write_text(json.dumps(meta, indent=1, default=_jsonable))
        arrays = {_ARRAY + name: value for name, value in self.arrays.items()}
        if self.per_sample is not None:
            arrays |= {_PER_SAMPLE + c: self.per_sample[c].to_numpy() for c in self.per_sample.columns}
        if arrays:
            paths.append(folder / ARRAYS_FILE)
            np.savez_compressed(paths[1], **arrays)
        return paths

    @classmethod
    def load(cls, folder: Path, run_id: str = "") -> Result:
        """The result `save` wrote into `folder` (arrays are read eagerly: the files may be temporary)."""
        meta = json.loads((folder / JSON_FILE).read_text())
        shape = meta.pop("per_sample")
        arrays: dict[str, np.ndarray] = {}
        if (folder / ARRAYS_FILE).is_file():
            with np.load(folder / ARRAYS_FILE, allow_pickle=False) as f:
                arrays = {name: f[name] for name in f.files}
        per_sample = None
        if shape is not None:
            per_sample = pd.DataFrame({c: arrays[_PER_SAMPLE + c] for c in shape["columns"]})
            per_sample.index.name = shape["index"]
        own = {name.removeprefix(_ARRAY): a for name, a in arrays.items() if name.startswith(_ARRAY)}
        return cls(**meta, per_sample=per_sample, arrays=own, run_id=run_id)


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable")


@dataclass
class Aggregate:
    """What a study kind computes from its results for the parent run: files (text, or PNG bytes), tables
    (MLflow's JSON tables), metrics and tags. Pure data: the store writes it."""

    files: dict[str, str | bytes] = field(default_factory=dict)
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)

    def __or__(self, other: Aggregate) -> Aggregate:
        return Aggregate(self.files | other.files, self.tables | other.tables, self.metrics | other.metrics,
                         self.tags | other.tags)  # fmt: skip
