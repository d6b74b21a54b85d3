"""The scenario schema: the keys every study shares, plus the sections each study kind adds.

`Scenario` is built from `ScenarioBase` and the fields of every kind in `bridge.studies.registry.KINDS`, so a new
kind brings its own section without edits here. A scenario asks for at least one kind (its primary key).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, NonNegativeFloat, PositiveFloat, create_model, model_validator

from bridge.core.schema import Name, Strict
from bridge.data.config import DataConfig
from bridge.defences.grid import NONE, check_entries, parse_entry
from bridge.engine.batch import BatchSize
from bridge.models.config import ModelConfig
from bridge.studies.registry import KINDS


class TrackingConfig(Strict):
    uri: str | None = None  # default: $MLFLOW_TRACKING_URI, else sqlite:///mlruns/mlflow.db
    experiment: Name | None = None  # default: the scenario name


class RayConfig(Strict):
    """Where and how `executor: ray` runs the tasks (none of it changes a result, so none of it is in a key)."""

    address: str | None = None  # a running cluster (default: $RAY_ADDRESS, else a local instance for the study)
    gpus_per_cell: NonNegativeFloat | None = None  # default: 1 where the cluster has GPUs, else 0; fractions share
    cpus_per_cell: PositiveFloat = 1.0


class ScenarioBase(Strict):
    name: Name
    seed: int = 0
    device: str = Field(default="auto", pattern=r"^(auto|cpu|cuda(:\d+)?)$")
    precision: Literal["fp32", "bf16"] = "fp32"  # bf16: the model's forward under autocast, for every toolkit
    batch_size: BatchSize = 128  # or auto: per attack cell, the largest that fits its device (bridge/engine/batch.py)
    data: DataConfig = DataConfig()
    model: ModelConfig | None = None  # one model ...
    models: list[ModelConfig] | None = Field(default=None, min_length=1)  # ... or several, compared side by side
    tracking: TrackingConfig = TrackingConfig()
    # The defences axis (bridge/defences/grid.py): each entry x each model is one defended model every task runs on.
    defences: list[Annotated[Any, BeforeValidator(parse_entry)]] = Field(default=[NONE], min_length=1)
    executor: Literal["local", "ray"] = "local"  # where tasks run: in this process, or as Ray tasks
    ray: RayConfig = RayConfig()

    @model_validator(mode="after")
    def _consistent(self) -> ScenarioBase:
        if self.model is not None and self.models is not None:
            raise ValueError("give either model (one) or models (a list), not both")
        names = [m.name for m in self.model_list]
        if len(set(names)) < len(names):
            raise ValueError(f"models need distinct names (set name:); got {', '.join(names)}")
        check_entries(self.defences, self.model_list, ValueError)
        keras = [m.name for m in self.model_list if m.framework == "keras"]
        if self.precision == "bf16" and keras:
            raise ValueError(f"precision bf16 applies to PyTorch models; {', '.join(keras)} is a Keras model")
        if not self.kinds:
            raise ValueError(f"no study to run: give one of {', '.join(k.primary for k in KINDS.values())}")
        for kind in self.kinds:
            kind.validate(self)
        for kind in KINDS.values():
            if kind not in self.kinds and (orphans := sorted(set(kind.fields) & self.model_fields_set)):
                raise ValueError(f"{', '.join(orphans)} applies to the {kind.name} study, which needs {kind.primary}")
        return self

    @property
    def model_list(self) -> list[ModelConfig]:
        return self.models or [self.model or ModelConfig()]

    @property
    def kinds(self) -> list[Any]:
        """The study kinds this scenario asks for (those whose primary key it sets)."""
        return [kind for kind in KINDS.values() if getattr(self, kind.primary, None) is not None]


def _fields() -> dict[str, Any]:
    return {name: spec for kind in KINDS.values() for name, spec in kind.fields.items()}


Scenario = create_model("Scenario", __base__=ScenarioBase, **_fields())
