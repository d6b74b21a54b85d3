"""The inversion study's section of a scenario: `inversion` (MIFace's settings, the classes, the start, the
independently trained model that judges the reconstructions)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from bridge.core.schema import Strict
from bridge.models.config import ModelConfig

INITS = {
    "zeros": "the zero image (MIFace's own start when given none)",
    "mean": "the mean training image over every class (no class's own mean: that would hand over the answer)",
}


class InversionConfig(Strict):
    """ART's MIFace on each (model, defence): one reconstruction per class, judged by `evaluator`, a model trained
    independently on the same training split (another architecture or seed), and by the distance to each class's
    mean training image."""

    classes: list[int] | Literal["all"] = "all"
    init: Literal[tuple(INITS)] = "zeros"  # type: ignore[valid-type]
    max_iter: int = Field(default=1000, gt=0)  # ART's default is 10000
    window_length: int = Field(default=100, gt=0)
    threshold: float = Field(default=0.99, gt=0, lt=1)  # MIFace stops once 1 - p(class) stays above it ...
    learning_rate: float = Field(default=0.1, gt=0)  # ... or stops improving over window_length steps
    batch_size: int = Field(default=10, gt=0)
    # another architecture and seed than the victims', trained on the same training split
    evaluator: ModelConfig = ModelConfig(arch="lenet", training={"epochs": 20, "lr": 1e-3, "batch_size": 64, "seed": 1})

    @model_validator(mode="after")
    def _evaluator_trained_here(self) -> InversionConfig:
        if not self.evaluator.trained_here:
            raise ValueError("inversion.evaluator: a zoo model the bridge trains (arch:), so it is independent of the "
                             "victims and its training is known")  # fmt: skip
        if self.classes != "all" and (not self.classes or len(set(self.classes)) < len(self.classes)):
            raise ValueError("inversion.classes: all, or distinct class indices")
        return self


FIELDS: dict[str, tuple[Any, Any]] = {"inversion": (InversionConfig | None, None)}


def validate(scenario: Any) -> None:
    """Checks across keys (ValueError: one line)."""
    keras = [m.name for m in scenario.model_list if m.framework == "keras"]
    if scenario.inversion is not None and keras:
        raise ValueError(f"inversion: MIFace runs on PyTorch models here; {', '.join(keras)} is a Keras model")
