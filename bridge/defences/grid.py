"""The defences axis of a scenario's grid: `none`, preprocessing defences and training-time defences.

Each entry of a scenario's `defences:` list makes, for every model, one defended model that every cell runs on:

- `none`: the model as trained.
- a preprocessing defence (`bridge.defences.preprocessing`: feature_squeezing, jpeg, spatial_smoothing,
  gaussian_noise, tvm, thermometer): folded into the shared model as its first layer, with its explicit gradient
  mode. Thermometer encoding changes the input channels, so its model is trained with the encoding in place.
- a training-time defence (`TRAINING_DEFENCES`: adversarial_training, label_smoothing, gaussian_augmentation,
  mixup, cutmix, weight_decay, dropout, dp_sgd, early_stopping): the model's own training config with the
  defence's options on top (and an optional `training:` of further overrides, e.g. more epochs), trained and
  cached like any zoo model.

A defended model is named `<model>/<defence>` in every table, run name and plot; `none` keeps the model's name.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from pydantic import Field, ValidationError, model_validator

from bridge.core.errors import first_error
from bridge.core.schema import Strict
from bridge.defences.preprocessing import DEFENCE_KINDS, Defence, parse_defence
from bridge.models.config import ModelConfig
from bridge.models.dp import DPConfig
from bridge.models.training import EarlyStoppingConfig

NONE = "none"


class TrainingDefence(Strict):
    """A defence applied while training the model: one of TRAINING_DEFENCES with its parameters."""

    kind: Literal[
        "adversarial_training", "label_smoothing", "gaussian_augmentation", "mixup", "cutmix", "weight_decay",
        "dropout", "dp_sgd", "early_stopping",
    ]  # fmt: skip
    name: str | None = None
    method: Literal["pgd_at", "trades", "fgsm_at"] | None = None  # adversarial_training
    attack: dict[str, Any] | None = None  # adversarial_training: the attack spec that makes the training examples
    beta: float | None = Field(default=None, gt=0)  # adversarial_training, trades only
    value: float | None = Field(default=None, ge=0)  # smoothing, sigma, alpha, decay or rate
    dp: DPConfig | None = None  # dp_sgd, written beside kind: noise_multiplier, max_grad_norm, delta
    early_stopping: EarlyStoppingConfig | None = None  # early_stopping, written beside kind: patience, ...
    training: dict[str, Any] = {}  # further training overrides (e.g. epochs) for this defended model

    @model_validator(mode="before")
    @classmethod
    def _gather(cls, raw: Any) -> Any:
        """dp_sgd's and early_stopping's parameters, written beside kind, become the training section they set."""
        if not isinstance(raw, dict) or raw.get("kind") not in SECTIONS:
            return raw
        field, section = SECTIONS[raw["kind"]]
        own = {k: v for k, v in raw.items() if k in section.model_fields}
        if not own:
            return raw
        rest = {k: v for k, v in raw.items() if k not in own}
        return {**rest, field: {**(rest.get(field) or {}), **own}}

    @model_validator(mode="after")
    def _complete(self) -> TrainingDefence:
        adversarial = self.kind == "adversarial_training"
        if adversarial and (self.method is None or self.attack is None):
            raise ValueError("adversarial_training needs method (pgd_at, trades or fgsm_at) and attack (a spec)")
        if not adversarial and (self.method or self.attack or self.beta):
            raise ValueError(f"method, attack and beta apply to adversarial_training, not {self.kind}")
        for kind, (field, section) in SECTIONS.items():
            if self.kind == kind and getattr(self, field) is None:
                raise ValueError(
                    f"{kind} needs {', '.join(n for n, f in section.model_fields.items() if f.is_required())}"
                )
            if self.kind != kind and getattr(self, field) is not None:
                raise ValueError(f"{field} applies to {kind}, not {self.kind}")
        takes_value = not adversarial and self.kind not in SECTIONS
        if takes_value and self.value is None:
            raise ValueError(f"{self.kind} needs value: {TRAINING_DEFENCES[self.kind][0]}")
        if self.kind in SECTIONS and self.value is not None:
            raise ValueError(f"value does not apply to {self.kind}")
        if self.name is None:
            self.name = self.method if adversarial else f"{self.kind}-{self._knob():g}"
        return self

    def _knob(self) -> float:
        """The number in the default name: value, dp_sgd's noise multiplier or early stopping's patience."""
        if self.dp is not None:
            return self.dp.noise_multiplier
        return self.early_stopping.patience if self.early_stopping is not None else self.value

    def apply(self, cfg: ModelConfig) -> ModelConfig:
        """`cfg` with this defence in its training (or dropout); validated like a model written by hand."""
        if not cfg.trained_here:
            raise ValueError(f"{self.kind} trains the model, but model {cfg.name} is not trained by the bridge")
        raw = cfg.model_dump(mode="json", exclude_unset=True, exclude={"name"})
        training = {**raw.get("training", {}), **self.training}
        if self.kind == "adversarial_training":
            training["adversarial"] = {"method": self.method, "attack": self.attack}
            if self.beta is not None:
                training["adversarial"]["beta"] = self.beta
        elif self.kind == "dropout":
            raw["dropout"] = self.value
        elif self.kind in SECTIONS:
            field = SECTIONS[self.kind][0]
            training[field] = getattr(self, field).model_dump(mode="json")
        else:
            training[TRAINING_DEFENCES[self.kind][1]] = self.value
        try:
            trained = ModelConfig.model_validate({**raw, "training": training})
        except ValidationError as e:
            raise ValueError(f"{self.kind} on model {cfg.name}: {first_error(e)}") from None
        return trained.model_copy(update={"name": f"{cfg.name}/{self.name}"})  # a victim's name, not a user's


# kind -> (what `value` is, the TrainingConfig field it sets)
TRAINING_DEFENCES: dict[str, tuple[str, str]] = {
    "adversarial_training": ("-", "adversarial"),
    "label_smoothing": ("the smoothing in [0, 1)", "label_smoothing"),
    "gaussian_augmentation": ("sigma of the noise added to training inputs", "gaussian_augmentation"),
    "mixup": ("alpha of Beta(alpha, alpha)", "mixup"),
    "cutmix": ("alpha of Beta(alpha, alpha)", "cutmix"),
    "weight_decay": ("the decay (L2 for sgd/adam, decoupled for adamw)", "weight_decay"),
    "dropout": ("the dropout rate before the classifier", "dropout"),
    "dp_sgd": ("- (`noise_multiplier`, `max_grad_norm`, `delta`: all required)", "dp"),
    "early_stopping": ("- (`patience` required, `min_delta` 0, `validation_fraction` 0.1)", "early_stopping"),
}

# kind -> the TrainingConfig section its parameters (written beside kind) make
SECTIONS: dict[str, tuple[str, type[Strict]]] = {
    "dp_sgd": ("dp", DPConfig),
    "early_stopping": ("early_stopping", EarlyStoppingConfig),
}

DefenceEntry = str | Defence | TrainingDefence


def parse_entry(raw: Any) -> DefenceEntry:
    """`none`, a preprocessing defence or a training defence, from what a scenario wrote (ValueError: one line)."""
    if raw == NONE:
        return NONE
    if not isinstance(raw, dict) or "kind" not in raw:
        raise ValueError(f"a defence is 'none' or a mapping with kind: one of {', '.join(all_kinds())}; got {raw!r}")
    if raw["kind"] not in (*DEFENCE_KINDS, *TRAINING_DEFENCES):
        raise ValueError(f"defence kind must be none or one of {', '.join(all_kinds()[1:])}; got {raw['kind']!r}")
    if raw["kind"] in TRAINING_DEFENCES:
        try:
            return TrainingDefence.model_validate(raw)
        except ValidationError as e:
            raise ValueError(f"{raw['kind']}: {first_error(e)}") from None
    return parse_defence(raw)


def all_kinds() -> list[str]:
    return [NONE, *DEFENCE_KINDS, *TRAINING_DEFENCES]


def entry_name(entry: DefenceEntry) -> str:
    return NONE if entry == NONE else str(entry.name)


def model_of(cfg: ModelConfig, entry: DefenceEntry) -> ModelConfig:
    """The model a victim behind `entry` is built from: `cfg`, or `cfg` trained as the training defence says."""
    return entry.apply(cfg) if isinstance(entry, TrainingDefence) else cfg


def victim_name(model: str, entry: DefenceEntry) -> str:
    return model if entry == NONE else f"{model}/{entry_name(entry)}"


def check_entries(entries: list[DefenceEntry], models: list[ModelConfig], problem: Callable[[str], Exception]) -> None:
    """Refuse defences that cannot apply to a model, naming both; and duplicate names."""
    names = [entry_name(e) for e in entries]
    if len(set(names)) < len(names):
        raise problem(f"defences need distinct names (set name:); got {', '.join(names)}")
    for i, entry in enumerate(entries):
        for cfg in models:
            if entry == NONE:
                continue
            if cfg.framework != "torch":
                raise problem(f"defences[{i}]: defences apply to PyTorch models; {cfg.name} is a {cfg.framework} model")
            if isinstance(entry, TrainingDefence):
                try:
                    entry.apply(cfg)
                except ValueError as e:
                    raise problem(f"defences[{i}]: {str(e).splitlines()[0]}") from None
            elif entry.kind == "thermometer" and not cfg.trained_here:
                raise problem(
                    f"defences[{i}]: thermometer changes the input channels, so the model is trained with it; "
                    f"model {cfg.name} is not trained by the bridge"
                )
