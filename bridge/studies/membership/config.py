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
    - {attack: pdtp, samples: 10, num_iter: 10, comparison_type: ratio}  # ART's PDTP: retrains per member, no ROC
  control: true                   # every attack also on a model that never saw the members
```
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, PositiveInt, ValidationError, field_validator, model_validator

from bridge.core.errors import first_error
from bridge.core.schema import Strict
from bridge.defences.grid import NONE, TrainingDefence, model_of
from bridge.models.config import ModelConfig
from bridge.models.training import TrainingConfig


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


class Pdtp(Strict):
    """ART's PDTP (art.metrics.privacy.PDTP, Long et al. 2017): a per-member leakage score, not a membership attack.
    For each scored member ART retrains an untrained copy of the target on its training set without that member and
    compares the two models' output probabilities, binned by ART in 100 bins of 0.01 (fixed: ART has no bin
    parameter): the largest ratio (either way) or absolute difference over every training sample and class,
    averaged over `num_iter` retrainings. One retraining per scored member and iteration, each the target's whole
    training: only `samples` members (drawn with the study's seed) are scored, at samples * num_iter trainings per
    role. Its row has leakage columns and no ROC."""

    attack: Literal["pdtp"]
    samples: PositiveInt = 10  # members scored (ART's `indexes`), drawn with the study's seed
    num_iter: PositiveInt = 10  # retrainings per scored member, averaged (ART's default)
    comparison_type: Literal["ratio", "difference"] = "ratio"  # ART's ComparisonType (its default: ratio)

    @property
    def unchanged(self) -> float:
        """The value of a retraining that moved no binned probability: a score above it counts as a leak."""
        return 1.0 if self.comparison_type == "ratio" else 0.0


AttackEntry = Annotated[Gap | BlackBox | Shadow | Lira | Shapr | Pdtp, Field(discriminator="attack")]


class Members(Strict):
    """What decides the members and how every model of the study is trained (each task carries it)."""

    members: int = Field(ge=10)  # drawn from the train split; as many non-members; each split in halves
    target_training: dict[str, Any] = {}  # overrides of each model's `training:` for the target, control and shadows
    seed: int | None = None  # draws the members and the shadows' data; default: the scenario's seed


class MembershipConfig(Members):
    attacks: list[AttackEntry] = Field(min_length=1)
    control: bool = True  # every attack also on an independently trained model that never saw members nor non-members

    @model_validator(mode="after")
    def _samples_among_members(self) -> MembershipConfig:
        for i, entry in enumerate(self.attacks):
            if isinstance(entry, Pdtp) and entry.samples > self.members:
                raise ValueError(f"attacks[{i}].pdtp.samples: {entry.samples} scored members, more than the "
                                 f"{self.members} members; at most {self.members}")  # fmt: skip
        return self


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


def pdtp_unsupported(training: TrainingConfig) -> str | None:
    """Why ART's retraining (PDTP's) cannot repeat the target's `training`, or None. ART's loop takes the optimizer,
    schedule, loss (label smoothing), epochs and batch size the bridge gives it; none of these options."""
    used = [name for name, on in (("augment", training.augment != "none"),
                                  ("gaussian_augmentation", training.gaussian_augmentation > 0),
                                  ("mixup", training.mixup > 0), ("cutmix", training.cutmix > 0),
                                  ("adversarial", training.adversarial is not None), ("dp", training.dp is not None),
                                  ("early_stopping", training.early_stopping is not None)) if on]  # fmt: skip
    if not used:
        return None
    return f"PDTP retrains the target through ART's training loop, which has no {', '.join(used)}"


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
