"""The extraction study's section of a scenario: `extraction` (the thief, its queries, the budgets, the attacks, an
out-of-distribution set)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, PositiveInt, field_validator, model_validator

from bridge.core.schema import Strict
from bridge.data.config import DataConfig
from bridge.models.config import ModelConfig

TRANSFORMS = {
    "none": "as read",
    "invert": "inverted (lower + upper bound - x)",
    "shuffle_pixels": "pixels shuffled by one fixed permutation (seed 0), the same for every image",
}

# Training options that ART's `fit` (plain cross-entropy minibatches, the configured optimizer) cannot follow: the
# thief and its true-label baseline must be trained the same way, so they are refused rather than ignored.
UNFOLLOWED = {"schedule": "none", "augment": "none", "label_smoothing": 0.0, "gaussian_augmentation": 0.0,
              "mixup": 0.0, "cutmix": 0.0, "adversarial": None}  # fmt: skip


class Source(DataConfig):
    """A data set the extraction reads besides the scenario's `data:` (the queries, the out-of-distribution set):
    a dataset split, its seeded selection (`n_samples`, the scenario's seed), then a deterministic `transform`."""

    split: Literal["train", "test"] = "train"
    transform: Literal[tuple(TRANSFORMS)] = "none"  # type: ignore[valid-type]

    def describe(self) -> str:
        how = "" if self.transform == "none" else f", {TRANSFORMS[self.transform]}"
        size = "" if self.n_samples is None else f", {self.n_samples} samples"
        return f"{self.dataset} {self.split}{size}{how}"


class ExtractionAttack(Strict):
    """One extraction attack: ART's CopycatCNN or KnockoffNets (random or adaptive sampling)."""

    attack: Literal["copycat", "knockoff"]
    sampling: Literal["random", "adaptive"] | None = None  # knockoff only (default random)
    reward: Literal["cert", "div", "loss", "all"] | None = None  # knockoff adaptive only (default all)
    use_probability: bool = False  # train on the victim's probabilities instead of its labels

    @model_validator(mode="after")
    def _applies(self) -> ExtractionAttack:
        if self.attack == "copycat" and (self.sampling is not None or self.reward is not None):
            raise ValueError("sampling and reward apply to knockoff only")
        if self.attack == "knockoff":
            self.sampling = self.sampling or "random"
        if self.reward is not None and self.sampling != "adaptive":
            raise ValueError("reward applies to knockoff with sampling adaptive only")
        if self.sampling == "adaptive":
            self.reward = self.reward or "all"
            if self.use_probability:
                raise ValueError("ART's adaptive KnockoffNets trains on the victim's labels only: use_probability "
                                 "would be ignored")  # fmt: skip
        return self

    @property
    def label(self) -> str:
        """The attack's name in tables and plots: copycat, knockoff-random, knockoff-adaptive-all, ...-prob."""
        parts = [self.attack, self.sampling, self.reward, "prob" if self.use_probability else None]
        return "-".join(p for p in parts if p)


class ExtractionConfig(Strict):
    """`extraction:` steal each victim with each attack at each query budget; a thief of the same architecture
    trained on as many true labels is the baseline every attack must match."""

    thief: ModelConfig  # a zoo architecture; its training's optimizer, lr, epochs and batch size drive ART's fit
    queries: Source  # where the thief's queries come from
    budgets: list[PositiveInt] = Field(min_length=1)  # queries to the victim: one point of each curve per budget
    attacks: list[ExtractionAttack] = Field(min_length=1)
    ood: Source | None = None  # fidelity off the distribution (none: not measured)
    query_batch_size: PositiveInt | None = None  # batch of the victim's answers (default: the scenario's)

    @field_validator("budgets")
    @classmethod
    def _distinct(cls, value: list[int]) -> list[int]:
        if len(set(value)) < len(value):
            raise ValueError("budgets must be distinct")
        return sorted(value)

    @model_validator(mode="after")
    def _consistent(self) -> ExtractionConfig:
        thief = self.thief
        if not thief.trained_here or thief.framework != "torch":
            raise ValueError("thief: a PyTorch zoo architecture (arch, trained here, no checkpoint)")
        training = thief.training
        if unfollowed := [k for k, default in UNFOLLOWED.items() if getattr(training, k) != default]:
            raise ValueError(f"thief.training: {', '.join(unfollowed)} cannot be followed by ART's fit (plain "
                             "cross-entropy minibatches); leave them out")  # fmt: skip
        labels = [a.label for a in self.attacks]
        if len(set(labels)) < len(labels):
            raise ValueError(f"attacks: each attack once; got {', '.join(labels)}")
        return self


# The scenario keys of the extraction study: name -> (annotation, default).
FIELDS: dict[str, tuple[Any, Any]] = {"extraction": (ExtractionConfig | None, None)}


def validate(scenario: Any) -> None:
    """Checks across keys (ValueError: one line)."""
    cfg = scenario.extraction
    data = scenario.data
    if data.split != "test":
        raise ValueError("extraction: accuracy and fidelity are measured on held-out samples: data.split must be test")
    for key, source in (("queries", cfg.queries), ("ood", cfg.ood)):
        if source is not None and source.bounds != data.bounds:
            raise ValueError(f"extraction.{key}.bounds {source.bounds} differ from data.bounds {data.bounds}")
    ood = cfg.ood
    if ood is not None and ood.transform == "none" and (ood.dataset, ood.split) == (data.dataset, data.split):
        raise ValueError("extraction.ood: the test split as read is the in-distribution set; give another dataset "
                         "or a transform")  # fmt: skip
    keras = [m.name for m in scenario.model_list if m.framework == "keras"]
    if keras:
        raise ValueError(f"extraction: victims are PyTorch models here; {', '.join(keras)} is a Keras model")
