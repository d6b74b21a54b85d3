"""The `poisoning:` section of a scenario: the attacks, the poisoning fractions and targets, the defences, and the
bounds of the checks.

```yaml
poisoning:
  attacks:
    - {attack: backdoor, trigger: pixel}                       # BadNets, dirty label (ART PoisoningAttackBackdoor)
    - {attack: backdoor, trigger: pattern}
    - {attack: backdoor, trigger: image, image: trigger.png, size: 3, blend: 0.8}
    - {attack: clean_label, trigger: pattern, eps: 0.1, retrainings: 3}   # ART PoisoningAttackCleanLabelBackdoor
    - {attack: gradient_matching, epsilon: 0.1, n_triggers: 5, retrainings: 3}  # ART GradientMatchingAttack (PyTorch)
  fractions: [0.01, 0.03, 0.1]    # the share of the training set poisoned: one point of each curve per fraction
                                   # (an attack's own `fractions:` replaces them for it)
  targets: [0]                     # the attacker's target class(es)
  defences:
    - {defence: activation}        # ART ActivationDefence on the poisoned training set
    - {defence: spectral}          # ART SpectralSignatureDefense
    - {defence: strip}             # STRIP at run time (the bridge's: ART's entropy is on the wrong axis)
    - {defence: neural_cleanse}    # ART NeuralCleanse: Keras models only (framework: keras)
  max_accuracy_drop: 0.05          # poisoning_stealthy: a poisoned model may lose this much clean accuracy
  asr_tolerance: 0.1               # backdoor_learned: an ASR within this of the base rate was not learned
```
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, FilePath, PositiveInt, model_validator

from bridge.core.schema import Strict
from bridge.models.config import ModelConfig


def check_fractions(value: list[float]) -> list[float]:
    """Shares of the training set, distinct, sorted."""
    if any(not 0 < f < 1 for f in value):
        raise ValueError("fractions are shares of the training set, in (0, 1)")
    if len(set(value)) < len(value):
        raise ValueError("fractions must be distinct")
    return sorted(value)


class Attack(Strict):
    """What every attack entry may set: its own fractions instead of the section's."""

    fractions: Annotated[list[float], AfterValidator(check_fractions), Field(min_length=1)] | None = None


class Trigger(Strict):
    """Where and what the backdoor trigger is (bridge/studies/poisoning/triggers.py places it on NCHW inputs)."""

    trigger: Literal["pixel", "pattern", "image"] = "pixel"
    distance: PositiveInt = 2  # from the bottom-right corner, as ART's perturbations count it
    value: float | None = None  # the pixel and pattern triggers' value (default: the data's upper bound)
    image: FilePath | None = None  # the image trigger's file (grey or RGB, as the inputs)
    size: PositiveInt = 3  # the image trigger's side, in pixels
    blend: float = Field(1.0, gt=0, le=1)  # the image trigger's weight: (1 - blend) x + blend image

    @model_validator(mode="after")
    def _image(self) -> Trigger:
        if (self.image is None) != (self.trigger != "image"):
            raise ValueError("image (a file) is given with trigger: image, and only then")
        if self.trigger != "image" and (self.size, self.blend) != (3, 1.0):
            raise ValueError("size and blend apply to trigger: image only")
        if self.trigger == "image" and self.value is not None:
            raise ValueError("value applies to the pixel and pattern triggers only")
        return self

    @property
    def label(self) -> str:
        return self.trigger


class Backdoor(Trigger, Attack):
    """BadNets: training samples of other classes get the trigger and the target's label (dirty label)."""

    attack: Literal["backdoor"]
    retrainings: PositiveInt = 1  # independent retrainings of the victim (training seeds seed .. seed + n - 1)

    @property
    def label(self) -> str:
        return f"backdoor-{self.trigger}"


class CleanLabel(Trigger, Attack):
    """ART's clean-label backdoor: target-class samples pushed away from their class by PGD on the clean model, then
    triggered; their labels stay true."""

    attack: Literal["clean_label"]
    norm: Literal["inf", "2"] = "inf"
    eps: float = Field(0.1, gt=0)  # ART's default 0.3 is large on [0, 1] inputs
    eps_step: float = Field(0.02, gt=0)
    max_iter: PositiveInt = 10
    num_random_init: int = Field(0, ge=0)
    retrainings: PositiveInt = 3

    @property
    def label(self) -> str:
        return f"clean_label-{self.trigger}"


class GradientMatching(Attack):
    """ART's GradientMatchingAttack (Witches' Brew): target-class samples perturbed within `epsilon` (L-inf, in the
    data's units) so that a model trained on them classifies `n_triggers` chosen test images (of other classes) as
    the target. `trigger_choice`: `random` test images, or the `closest`: those to which the clean model gives the
    target the highest probability (on digits, a random image of another class was moved by no retraining at L-inf 0.3
    and the closest by every one: README's poisoning paragraph)."""

    attack: Literal["gradient_matching"]
    epsilon: float = Field(0.1, gt=0)
    max_trials: PositiveInt = 1
    max_epochs: PositiveInt = 20  # of the poison optimisation (one signed Adam step per batch of poisons)
    # ART's schedule scaled to max_epochs: learning_rate, /10, /100, /1000 with milestones at 40, 60, 80 and 88 % of
    # the epochs; ART's schedule skips its first milestone, so the rate drops at 60, 80 and 88 %
    learning_rate: float = Field(0.1, gt=0)
    batch_size: PositiveInt = 64
    n_triggers: PositiveInt = 5  # test images of non-target classes the poison aims at (the ASR's inputs)
    trigger_choice: Literal["random", "closest"] = "random"
    retrainings: PositiveInt = 3

    @property
    def label(self) -> str:
        return f"gradient_matching-{self.trigger_choice}"


AttackEntry = Annotated[Backdoor | CleanLabel | GradientMatching, Field(discriminator="attack")]


class Activation(Strict):
    """ART's ActivationDefence: per class, the last layer's activations reduced and clustered in two."""

    defence: Literal["activation"]
    nb_clusters: int = Field(2, ge=2)
    nb_dims: PositiveInt = 10
    reduce: Literal["PCA", "FastICA", "TSNE"] = "PCA"
    cluster_analysis: Literal["smaller", "distance", "relative-size", "silhouette-scores"] = "smaller"


class Spectral(Strict):
    """ART's SpectralSignatureDefense: per class, the samples with the largest outlier score removed."""

    defence: Literal["spectral"]
    expected_pp_poison: float = Field(0.33, gt=0, lt=1)  # ART's default; it removes eps_multiplier times this share
    eps_multiplier: float = Field(1.5, gt=0)
    batch_size: PositiveInt = 128


class Strip(Strict):
    """STRIP at run time, computed by the bridge (bridge/studies/poisoning/strip.py: ART's entropy is taken on the
    wrong axis): an input whose predictions stay confident when blended with clean images is flagged."""

    defence: Literal["strip"]
    num_samples: PositiveInt = 20
    false_acceptance_rate: float = Field(0.01, gt=0, lt=1)
    n_validation: PositiveInt = 100  # clean training samples STRIP sets its entropy threshold on


class NeuralCleanse(Strict):
    """ART's NeuralCleanse (KerasNeuralCleanse; ART implements it for Keras models only, a row says so for PyTorch
    ones): per class, the smallest mask and pattern that send clean inputs to it, reverse-engineered on clean
    training samples; the bridge computes each class's anomaly index from the masks' L1 norms, and measures the
    model after ART's pruning mitigation. ART's defaults except `steps` (1000 per class)."""

    defence: Literal["neural_cleanse"]
    steps: PositiveInt = 100  # per class, each of n_validation // batch_size batches
    init_cost: float = Field(1e-3, gt=0)
    norm: Literal[1, 2] = 2
    learning_rate: float = Field(0.1, gt=0)
    attack_success_threshold: float = Field(0.99, gt=0, le=1)
    patience: PositiveInt = 5
    early_stop: bool = True
    early_stop_threshold: float = Field(0.99, gt=0, le=1)
    early_stop_patience: PositiveInt = 10
    cost_multiplier: float = Field(1.5, gt=1)
    batch_size: PositiveInt = 32
    n_validation: PositiveInt = 200  # clean training samples (untouched by the attack) the triggers are sought on

    @model_validator(mode="after")
    def _batches(self) -> NeuralCleanse:
        if self.n_validation < self.batch_size:
            raise ValueError("n_validation must be at least batch_size: ART runs n_validation // batch_size batches "
                             "per step")  # fmt: skip
        return self


DefenceEntry = Annotated[Activation | Spectral | Strip | NeuralCleanse, Field(discriminator="defence")]


class Section(Strict):
    """What every task of the study carries: the checks' bounds and the seed of the poison draws."""

    max_accuracy_drop: float = Field(0.05, ge=0, le=1)  # poisoning_stealthy's bound on the clean accuracy lost
    asr_tolerance: float = Field(0.1, ge=0, le=1)  # backdoor_learned: ASR above base rate + this is a learned trigger
    seed: int | None = None  # draws the poisoned samples and seeds ART; default: the scenario's seed


class PoisoningConfig(Section):
    attacks: list[AttackEntry] = Field(min_length=1)
    fractions: Annotated[list[float], AfterValidator(check_fractions), Field(min_length=1)]
    targets: list[Annotated[int, Field(ge=0)]] = Field([0], min_length=1)
    defences: list[DefenceEntry] = []

    @model_validator(mode="after")
    def _distinct(self) -> PoisoningConfig:
        for what, names in (("attacks", [a.label for a in self.attacks]),
                            ("defences", [d.defence for d in self.defences]), ("targets", self.targets)):  # fmt: skip
            if len(set(names)) < len(names):
                raise ValueError(f"{what}: each once; got {', '.join(map(str, names))}")
        return self


# The scenario keys of the poisoning study: name -> (annotation, default).
FIELDS: dict[str, tuple[Any, Any]] = {"poisoning": (PoisoningConfig | None, None)}


def unsupported(cfg: ModelConfig) -> str | None:
    """Why the poisoning study cannot run on model `cfg` (a row says so), or None."""
    if not cfg.trained_here:
        return "the bridge retrains the victim on the poisoned set: it must be a zoo arch trained here (PyTorch, Keras)"
    return None


def attack_unsupported(cfg: ModelConfig, entry: Any) -> str | None:
    """Why `entry` cannot poison model `cfg` (a row says so), or None."""
    if entry.attack == "gradient_matching" and cfg.framework != "torch":
        return "the model is Keras: ART implements GradientMatchingAttack for PyTorch models only"
    return None


def neural_cleanse_unsupported(cfg: ModelConfig) -> str | None:
    """Why ART's NeuralCleanse cannot run on model `cfg` (a row says so), or None."""
    if cfg.framework != "keras":
        return "the model is PyTorch: ART implements NeuralCleanse (KerasNeuralCleanse) for Keras models only"
    if cfg.normalize is not None:
        return ("ART's KerasNeuralCleanse calls the Keras network on raw inputs, without the classifier's "
                "preprocessing: a model with normalize would be probed on unnormalised inputs")  # fmt: skip
    return None


def validate(scenario: Any) -> None:
    """Checks across keys (ValueError: one line)."""
    if scenario.data.split != "test":
        raise ValueError("poisoning: the victim is trained on the train split; data.split must be test (held out)")
