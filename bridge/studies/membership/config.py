"""The `membership:` section of a scenario: how many members, how the target is trained, the attacks and the control.

```yaml
membership:
  members: 500                    # drawn from the train split (seeded); as many non-members from the rest of it
  target_training: {epochs: 60}   # overrides of the model's training for the target (overfitting is what MIA measures)
  attacks:
    - {attack: gap}                                          # ART MembershipInferenceBlackBoxRuleBased
    - {attack: blackbox, input_type: loss, model_type: rf}   # ART MembershipInferenceBlackBox
    - {attack: shadow, shadow_models: 3, model_type: rf}     # ART ShadowModels + MembershipInferenceBlackBox
    - {attack: lira, shadow_models: 8, variant: online}      # the bridge's own (online | offline)
    - {attack: shapr, knn_metric: null}                      # ART's SHAPr: per-member leakage, no ROC
  control: true                   # every attack also on a model that never saw the members
```
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, PositiveInt, ValidationError, field_validator

from bridge.core.errors import first_error
from bridge.core.schema import Strict
from bridge.defences.grid import NONE, TrainingDefence, model_of
from bridge.models.config import ModelConfig


class Gap(Strict):
    """ART's MembershipInferenceBlackBoxRuleBased: member iff correctly classified (the generalisation gap)."""

    attack: Literal["gap"]


class BlackBox(Strict):
    """ART's MembershipInferenceBlackBox, fitted on the attacker's halves of the members and non-members."""

    attack: Literal["blackbox"]
    input_type: Literal["prediction", "loss"] = "prediction"  # the model's logits, or its loss on the true label
    model_type: Literal["nn", "rf", "gb"] = "rf"
    scaler: Literal["standard", "minmax", "robust", "none"] = "standard"
    nn_epochs: PositiveInt = 100  # model_type nn only (ART's defaults, written out)
    nn_batch_size: PositiveInt = 100
    nn_learning_rate: float = Field(default=1e-4, gt=0)


class Shadow(Strict):
    """ART's ShadowModels (trained by ART on the attacker's data) feeding a MembershipInferenceBlackBox."""

    attack: Literal["shadow"]
    shadow_models: PositiveInt = 3
    model_type: Literal["nn", "rf", "gb"] = "rf"
    scaler: Literal["standard", "minmax", "robust", "none"] = "standard"
    nn_epochs: PositiveInt = 100
    nn_batch_size: PositiveInt = 100
    nn_learning_rate: float = Field(default=1e-4, gt=0)


class Lira(Strict):
    """The bridge's LiRA: shadow models trained by the bridge, a per-example Gaussian likelihood ratio."""

    attack: Literal["lira"]
    variant: Literal["online", "offline"] = "online"
    shadow_models: int = 8

    @field_validator("shadow_models")
    @classmethod
    def _enough(cls, value: int, info: Any) -> int:
        least = 2 if info.data.get("variant") == "online" else 1
        if value < least:
            why = "one IN and one OUT per example" if least == 2 else "OUT models"
            variant = info.data.get("variant")
            raise ValueError(f"LiRA {variant} needs at least {least} shadow model(s) ({why}); got {value}")
        return value


class Shapr(Strict):
    """ART's SHAPr (art.metrics.privacy.SHAPr): a per-member leakage score (the member's Shapley value to a KNN on
    the model's output probabilities that labels the non-members), not a membership attack: it scores only members,
    so its row has leakage columns and no ROC."""

    attack: Literal["shapr"]
    knn_metric: Literal["minkowski", "euclidean", "manhattan", "chebyshev", "cosine"] | None = None  # None: sklearn's


AttackEntry = Annotated[Gap | BlackBox | Shadow | Lira | Shapr, Field(discriminator="attack")]


class Members(Strict):
    """What decides the members and how every model of the study is trained (each task carries it)."""

    members: int = Field(ge=10)  # drawn from the train split; as many non-members; each split in halves
    target_training: dict[str, Any] = {}  # overrides of each model's `training:` for the target, control and shadows
    seed: int | None = None  # draws the members and the shadows' data; default: the scenario's seed


class MembershipConfig(Members):
    attacks: list[AttackEntry] = Field(min_length=1)
    control: bool = True  # every attack also on an independently trained model that never saw members nor non-members


# The scenario keys of the membership study: name -> (annotation, default).
FIELDS: dict[str, tuple[Any, Any]] = {"membership": (MembershipConfig | None, None)}


def target_model(cfg: ModelConfig, defence: Any, overrides: dict[str, Any]) -> ModelConfig:
    """The model the target (and control and shadows) are built from: `cfg` behind its training defence, with
    `target_training` on top (ValueError: one line)."""
    cfg = model_of(cfg, defence)
    raw = cfg.model_dump(mode="json", exclude_unset=True, exclude={"name"})  # a defended victim's name has a /
    try:
        target = ModelConfig.model_validate({**raw, "training": {**raw.get("training", {}), **overrides}})
    except ValidationError as e:
        raise ValueError(f"membership.target_training: {first_error(e)}") from None
    return target.model_copy(update={"name": cfg.name})


def unsupported(cfg: ModelConfig, defence: Any) -> str | None:
    """Why the membership study cannot run on model `cfg` behind `defence` (a row says so), or None."""
    if not cfg.trained_here or cfg.framework != "torch":
        return "the bridge trains the target on the members: a PyTorch zoo arch trained here is needed"
    if defence != NONE and not isinstance(defence, TrainingDefence):
        return "a preprocessing defence does not change what the model memorised: only training-time ones apply"
    return None


def validate(scenario: Any) -> None:
    """`target_training` applies to every model and training defence the study trains (ValueError: one line)."""
    overrides = scenario.membership.target_training
    for cfg in scenario.model_list:
        for entry in scenario.defences:
            if unsupported(cfg, entry) is None:
                target_model(cfg, entry, overrides)
