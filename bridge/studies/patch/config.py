"""The `patch:` section of a scenario: the patch's shape and goal, the scales it is judged at, how it is trained.

```yaml
patch:
  shape: circle                  # square | circle
  target: 0                      # a class: targeted (the patch makes images that class); left out: untargeted
  scales: [0.05, 0.15, 0.3]      # fractions of the image the patch covers, each a point of the curve
  rotation: 22.5                 # degrees either way, in training and evaluation
  split: train                   # the patch is trained on this split (held-out from data.split)
  n_train: 500                   # training images, a seeded selection of that split
  steps: 300                     # the bridge's Adam steps, one batch each
  learning_rate: 0.05
  batch_size: 64
  toolkits: [bridge, art]        # the bridge's torch patch, and ART's
  art: {max_iter: 20, learning_rate: 5.0}   # ART's iterations (each over all n_train images) and step
  draws: 2                       # random placements per evaluation image and scale
  transfer: true                 # every patch also judged by the study's other models
```
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, NonNegativeInt, PositiveFloat, PositiveInt, field_validator

from bridge.core.schema import Strict
from bridge.defences.grid import NONE, TrainingDefence
from bridge.studies.patch.geometry import SHAPES

TOOLKITS = ("bridge", "art")
Scale = Annotated[float, Field(gt=0, lt=1)]


class ArtPatch(Strict):
    """ART's optimisation: `max_iter` passes over all the training images, each a gradient step of `learning_rate`
    (AdversarialPatchNumpy sums the images' loss gradients; AdversarialPatchPyTorch runs Adam at that rate)."""

    max_iter: PositiveInt = 20
    learning_rate: PositiveFloat = 5.0


class PatchConfig(Strict):
    """`patch:` a universal patch per (model, toolkit), trained over random scales, rotations and locations, then
    judged on the evaluation samples at each scale, by its own model, that model behind each preprocessing defence,
    and (with `transfer`) every other model of the study."""

    shape: Literal[SHAPES] = "circle"  # type: ignore[valid-type]
    target: NonNegativeInt | None = None
    scales: list[Scale] = Field(min_length=2)
    rotation: float = Field(default=22.5, ge=0, le=180)
    split: Literal["train", "test"] = "train"
    n_train: PositiveInt | None = 500  # none: the whole split
    steps: PositiveInt = 300
    learning_rate: PositiveFloat = 0.05
    batch_size: PositiveInt = 64
    toolkits: list[Literal[TOOLKITS]] = Field(default=list(TOOLKITS), min_length=1)  # type: ignore[valid-type]
    art: ArtPatch = ArtPatch()
    draws: PositiveInt = 1
    transfer: bool = True
    grid: PositiveInt = 8  # patched samples shown per patch (at the largest scale, on its own model)

    @field_validator("scales")
    @classmethod
    def _distinct(cls, value: list[float]) -> list[float]:
        if len(set(value)) < len(value):
            raise ValueError("scales must be distinct")
        return sorted(value)

    @field_validator("toolkits")
    @classmethod
    def _once(cls, value: list[str]) -> list[str]:
        if len(set(value)) < len(value):
            raise ValueError("each toolkit once")
        return value

    @property
    def targeted(self) -> bool:
        return self.target is not None


# The scenario keys of the patch study: name -> (annotation, default).
FIELDS: dict[str, tuple[Any, Any]] = {"patch": (PatchConfig | None, None)}


def validate(scenario: Any) -> None:
    """Checks across keys (ValueError: one line)."""
    cfg: PatchConfig = scenario.patch
    if cfg.split == scenario.data.split:
        raise ValueError(f"patch.split: the patch is judged on held-out images: it cannot be trained on data.split "
                         f"({cfg.split}); use the other split")  # fmt: skip
    keras = [m.name for m in scenario.model_list if m.framework == "keras"]
    if keras:
        raise ValueError(f"patch: victims are PyTorch models here; {', '.join(keras)} is a Keras model")
    sources = [d for d in scenario.defences if d == NONE or isinstance(d, TrainingDefence)]
    if not sources:
        raise ValueError("patch: patches are trained on undefended (or adversarially trained) models: defences "
                         "needs none")  # fmt: skip
