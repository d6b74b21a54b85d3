"""A victim described, not built: everything that decides which model a task attacks and on which samples.

A recipe is plain JSON-able data, so a task carrying it can run in another process or on another machine: the
worker rebuilds the victim from it (`bridge.engine.victim`), loading the weights the driver trained from the
model cache. Its `key` is a hash of all of it, the model's identity (the cache key of a zoo model, or the sha256
of the file its weights come from) and the fingerprints of the evaluation and training data included.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import cached_property
from typing import Any

from bridge.core.identity import digest

NONE = "none"


@dataclass(frozen=True)
class Recipe:
    name: str  # the victim's name in every table and run name: the model's, or `<model>/<defence>`
    base: str  # the model's name without its defence
    model: dict[str, Any]  # the ModelConfig as written (JSON, unset keys left out)
    defence: str | dict[str, Any]  # `none`, or the defence entry as parsed (JSON)
    defence_name: str
    data: dict[str, Any]  # the DataConfig (JSON)
    seed: int  # selects the evaluation samples
    device: str  # as the scenario wrote it (auto, cpu, cuda:N)
    precision: str
    batch_size: int  # of the predictions on the victim (`batch_size: auto`: bridge.engine.batch.DEFAULT)
    model_identity: str  # what the weights are (see bridge.models.build.model_identity)
    data_fingerprint: str  # the exact evaluation samples
    train_fingerprint: str  # the exact training samples

    @cached_property
    def key(self) -> str:
        return digest(asdict(self), 32)

    @property
    def preprocessing(self) -> bool:
        """Whether the defence is a layer in front of the model (so examples made on the model transfer to it)."""
        return isinstance(self.defence, dict) and "gradient" in self.defence

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)
