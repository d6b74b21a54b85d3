"""The `model:` section: which network a study attacks and, for zoo architectures, how the bridge trains it."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, PositiveFloat, model_validator

from bridge.core.schema import Name, Strict, check_name
from bridge.models.keras_zoo import KERAS_ARCHITECTURES, unsupported_training
from bridge.models.training import LATER_OPTIONS, TrainingConfig
from bridge.models.zoo import ARCHITECTURES, validate_options

SOURCES = ("arch", "factory", "torchscript", "mlflow", "keras")


DEFAULT_ARCH = "small_cnn"


class NormalizeConfig(Strict):
    """Per-channel mean and std, in pixel units, applied inside the model."""

    mean: list[float] = Field(min_length=1)
    std: list[PositiveFloat] = Field(min_length=1)

    @model_validator(mode="after")
    def _same_length(self) -> NormalizeConfig:
        if len(self.mean) != len(self.std):
            raise ValueError(f"normalize mean has {len(self.mean)} values but std has {len(self.std)}")
        return self


class ModelConfig(Strict):
    """Exactly one source: `arch` (a zoo architecture), `factory`, `torchscript`, `mlflow` or `keras` (a .keras
    file); small_cnn when none is given. `mlflow` may go with `arch` or `factory`: a state dict logged to MLflow,
    loaded into that network (which is then not trained here).

    `checkpoint` (a state dict) goes with `arch` (load it instead of training) or with `factory`; `options`,
    `dropout` and `training` are for zoo architectures, `factory_kwargs` for factories. `framework: keras` builds
    and trains the Keras version of `arch` (KERAS_ARCHITECTURES); a `keras` file implies it.
    """

    name: Name | None = None  # default: the arch (with -keras for Keras), the factory's function or the file's stem
    framework: Literal["torch", "keras"] = "torch"
    arch: Literal[tuple(ARCHITECTURES)] | None = None  # type: ignore[valid-type]
    options: dict[str, Any] = {}
    dropout: float = Field(default=0.0, ge=0, lt=1)
    training: TrainingConfig = TrainingConfig()
    factory: str | None = Field(default=None, pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")  # package.module:function
    factory_kwargs: dict[str, Any] = {}
    checkpoint: Path | None = None
    torchscript: Path | None = None
    mlflow: str | None = Field(default=None, pattern=r"^(models|runs):/.+")  # a logged PyTorch model's URI
    trust_pickle: bool = False  # an mlflow model loadable only by running code from its file (a pickled module)
    keras: Path | None = None  # a Keras model saved with model.save("file.keras"): NHWC inputs, logits out
    normalize: NormalizeConfig | None = None

    @model_validator(mode="after")
    def _one_source(self) -> ModelConfig:
        given = [s for s in SOURCES if getattr(self, s) is not None]
        weights_only = self.mlflow is not None and given in (["arch", "mlflow"], ["factory", "mlflow"])
        if len(given) > 1 and not weights_only:
            raise ValueError(
                f"give exactly one of {', '.join(SOURCES)}; got {' and '.join(given)} (mlflow may also go with arch "
                "or factory: a state dict for that network)"
            )
        if not given:
            self.arch = DEFAULT_ARCH
        misplaced = {
            "options": self.arch is None,
            "dropout": self.arch is None,
            "training": self.arch is None or self.checkpoint is not None or self.mlflow is not None,
            "factory_kwargs": self.factory is None,
            "checkpoint": self.torchscript is not None or self.mlflow is not None or self.keras is not None,
            "trust_pickle": self.mlflow is None or weights_only,
        }
        for option, wrong in misplaced.items():
            if wrong and option in self.model_fields_set:
                raise ValueError(f"{option} does not apply to {self._source_text()}")
        if self.arch is not None:
            self.options = validate_options(self.arch, self.options)
        self._check_framework()
        if self.name is None:
            if self.mlflow is not None:
                self.name = self.mlflow.rstrip("/").split("/")[-1]
            elif self.keras is not None:
                self.name = self.keras.stem
            elif self.arch is not None:
                self.name = self.arch + ("-keras" if self.framework == "keras" else "")
            else:
                self.name = self.factory.split(":")[1] if self.factory else self.torchscript.stem
            try:
                check_name(self.name)
            except ValueError as exc:
                raise ValueError(f"name: the default name (from the source) {exc}; set name:") from None
        return self

    def _check_framework(self) -> None:
        if self.keras is not None:
            if "framework" in self.model_fields_set and self.framework != "keras":
                raise ValueError("a keras file is a Keras model: framework must be keras (or left out)")
            self.framework = "keras"
        if self.framework != "keras":
            return
        if self.factory is not None or self.torchscript is not None or self.mlflow is not None:
            raise ValueError(f"framework keras takes arch or keras (a .keras file), not {self._source_text()}")
        if self.arch is not None and self.arch not in KERAS_ARCHITECTURES:
            raise ValueError(f"framework keras has arch {', '.join(KERAS_ARCHITECTURES)}; not {self.arch}")
        if self.checkpoint is not None:
            raise ValueError("checkpoint (a PyTorch state dict) does not apply to framework keras")
        if self.arch is not None and (reason := unsupported_training(self.training)):
            raise ValueError(f"training: {reason}")
        if self.arch is not None and (later := [k for k in LATER_OPTIONS if getattr(self.training, k) is not None]):
            raise ValueError(f"training: {', '.join(later)} is implemented for PyTorch models only")

    def _source_text(self) -> str:
        if self.keras is not None:
            return "a keras file"
        if self.torchscript is not None:
            return "a torchscript model"
        if self.mlflow is not None:
            if self.arch is not None or self.factory is not None:
                return f"MLflow weights loaded into {'an arch' if self.arch is not None else 'a factory model'}"
            return "an MLflow model"
        if self.factory is not None:
            return "a factory model"
        return "an arch with a checkpoint (it is not trained)"

    @property
    def trained_here(self) -> bool:
        """Whether build_model trains this model (or loads it from the cache)."""
        return self.arch is not None and self.checkpoint is None and self.mlflow is None
