"""Adversarial training: the training examples are made by any toolkit, from the same attack spec a scenario writes.

`model.training.adversarial` names a method and an attack spec (one toolkit, one eps):

- `pgd_at` (Madry et al. 2018): every step trains on the attack's examples only. Madry et al.'s attack is
  `attack: pgd`; any fixed-budget untargeted attack of the catalogue is accepted.
- `fgsm_at` ("Fast is better than free", Wong et al. 2020): one signed-gradient step of 1.25*eps from a uniform
  random start in the eps-ball, i.e. `attack: pgd, steps: 1, step_size: 1.25*eps, random_start: true,
  restarts: 1`. Those four fields are filled when left out and refused when they say otherwise. Wong et al.'s
  cyclic learning rate and early stopping (against catastrophic overfitting) are not part of it: use the
  training's own `schedule`.
- `trades` (Zhang et al. 2019): loss = CE(f(x), y) + beta * KL(softmax f(x) || softmax f(x_adv)). The toolkits'
  attacks maximise the cross-entropy against the true label; the original TRADES inner maximisation maximises
  the KL term itself (from x + 0.001*N(0, 1)). So the examples here are CE-PGD examples, not TRADES's own: the
  outer loss is TRADES's, the inner maximisation is not.

With `trainer: art`, ART's own trainers run instead (pgd_at: `AdversarialTrainer` with ratio 1.0, which is what
`AdversarialTrainerMadryPGD` builds, minus its 0-255 defaults; trades: `AdversarialTrainerTRADESPyTorch`), on an
ART attack built from the spec like any cell; ART attacks in train mode and reports no curves.

The attack is built once per training on a `SharedModel` view of the network being trained (it holds the live
parameters, so every batch is attacked with the current weights). Examples are made in eval mode, so batch norm
statistics are not polluted by adversarial batches and dropout does not randomise the attack, with the parameters
frozen (the attack needs input gradients only, and no toolkit's backward pass leaves gradients in them); the
training step itself runs in train mode.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field, ValidationError, model_validator
from torch import nn

from bridge.attacks.catalogue import NATIVE
from bridge.attacks.spec import AttackSpec, Budget, SpecError, Tuning, resolve_attack
from bridge.core.errors import first_error
from bridge.core.schema import Strict
from bridge.models.shared import Counters, SharedModel

FGSM_AT_STEP = 1.25  # Wong et al.'s step, in units of eps
FGSM_AT_FIELDS = {"steps": 1, "random_start": True, "restarts": 1}  # plus step_size = FGSM_AT_STEP * eps
TRADES_BETA = 6.0  # Zhang et al.'s beta for CIFAR-10 (1/lambda in the paper)


class _AttackFields(Tuning):
    """One attack as a scenario cell writes it (one toolkit, one eps), before the catalogue fills it in."""

    attack: str
    toolkit: str
    norm: str
    eps: Budget | None = None
    seed: int | None = None
    batch_size: int | None = Field(default=None, gt=0)


def resolve_training_attack(method: str, raw: dict[str, Any]) -> AttackSpec:
    """The attack spec a training method uses, checked: fixed-budget, untargeted, and for fgsm_at the FGSM-RS step.

    Raises ValueError with a one-line message naming the offending key (prefixed `attack.`).
    """
    try:
        fields = _AttackFields.model_validate(raw).model_dump(exclude_unset=True)
    except ValidationError as exc:
        raise ValueError(f"attack.{first_error(exc)}") from None
    if method == "fgsm_at":
        fields = _fgsm_at_fields(fields)
    try:
        spec = resolve_attack(fields)
    except SpecError as exc:
        raise ValueError(f"attack.{exc.field}: {exc.message}") from None
    if spec.targeted != "none":
        raise ValueError(f"attack.targeted: adversarial training takes untargeted attacks only, not {spec.targeted}")
    if spec.kind != "fixed":
        raise ValueError(
            f"attack.attack: adversarial training needs a fixed-budget attack (eps is the training budget); "
            f"{spec.native or spec.attack} is minimum-norm"
        )
    return spec


def _fgsm_at_fields(fields: dict[str, Any]) -> dict[str, Any]:
    """Fill FGSM-RS's pgd fields where left out; refuse any that contradicts it."""
    if fields.get("attack") != "pgd":
        raise ValueError(
            f"attack.attack: fgsm_at is one pgd step from a random start (Wong et al.); write attack: pgd, "
            f"not {fields.get('attack')} (steps, step_size and random_start are filled)"
        )
    eps = fields.get("eps")
    if eps is None:
        raise ValueError("attack.eps: fgsm_at needs eps (absolute, in input units)")
    wanted = {**FGSM_AT_FIELDS, "step_size": FGSM_AT_STEP * eps}
    for name, value in wanted.items():
        given = fields.get(name)
        if given is None:
            fields[name] = value
        elif given != value and not (name == "step_size" and math.isclose(given, value, rel_tol=1e-6)):
            raise ValueError(
                f"attack.{name}: fgsm_at (Wong et al.) needs {name} = {value:g} "
                f"(steps 1, step_size 1.25*eps, random_start true, restarts 1), got {given}; leave it out to fill it"
            )
    return fields


class AdversarialTrainingConfig(Strict):
    """`model.training.adversarial`: the method and the attack that makes its training examples.

    After validation `attack` holds the resolved spec (every field the attack uses, explicit), so the model cache
    key, which hashes the whole training config, changes with any of them.
    """

    method: Literal["pgd_at", "trades", "fgsm_at"]
    # bridge: the bridge's loop (any toolkit's attack); art: ART's trainers (pgd_at: AdversarialTrainer with ratio
    # 1.0, as AdversarialTrainerMadryPGD; trades: AdversarialTrainerTRADESPyTorch), with an ART attack
    trainer: Literal["bridge", "art"] = "bridge"
    attack: dict[str, Any]  # one cell of a scenario: attack, toolkit, norm, eps, steps, step_size, random_start, ...
    beta: float | None = Field(default=None, gt=0)  # trades only: the weight of the KL term (default TRADES_BETA)

    @model_validator(mode="after")
    def _resolve(self) -> AdversarialTrainingConfig:
        if self.method != "trades" and self.beta is not None:
            raise ValueError(
                f"beta is the weight of TRADES's KL term: it applies to method trades only, not {self.method}"
            )
        if self.method == "trades" and self.beta is None:
            self.beta = TRADES_BETA  # filled here, not as the field's default, so other methods dump without one
        spec = self.spec()
        if self.trainer == "art" and self.method == "fgsm_at":
            raise ValueError(
                "trainer art has no fgsm_at: ART's fast-is-better-than-free trainer imposes its own cyclic learning "
                "rate; use trainer bridge"
            )
        if self.trainer == "art" and spec.toolkit != "art":
            raise ValueError(f"trainer art runs an ART attack: write attack.toolkit: art, not {spec.toolkit}")
        dump = spec.model_dump(exclude_none=True)
        if spec.attack == NATIVE:
            del dump["loss"]  # the resolver's marker for native cells, refused as written input
        first = ("attack", "toolkit", "norm", "eps")  # read like a scenario cell
        self.attack = {**{k: dump.pop(k) for k in first if k in dump}, **dump}
        return self

    def spec(self) -> AttackSpec:
        """The attack spec (resolving is idempotent: a resolved spec resolves to itself)."""
        return resolve_training_attack(self.method, self.attack)

    def check(self, n_classes: int) -> None:
        """Raise ValueError when the spec's toolkit cannot run it (as a scenario cell would be refused)."""
        self.translate(n_classes)

    def translate(self, n_classes: int) -> tuple[Any, Any]:
        """(adapter, translation) for the spec, checked; a combination the toolkit lacks is a ValueError."""
        from bridge.attacks.adapter import Unsupported, get_adapter

        spec = self.spec()
        adapter = get_adapter(spec.toolkit)
        try:
            translation = adapter.translate(spec, n_classes)
        except Unsupported as exc:
            raise ValueError(f"adversarial training attack {spec.label}: {exc}") from None
        adapter.check(translation)
        return adapter, translation


class _Training(nn.Module):
    """The net being trained behind a throwaway module: SharedModel's counting hook goes on this, not on the net,
    so the net leaves training without a hook attached."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


@contextmanager
def _frozen(net: nn.Module) -> Iterator[None]:
    """Parameters out of autograd inside the block, restored after."""
    flags = [(p, p.requires_grad) for p in net.parameters()]
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


@contextmanager
def seeded_numpy(seed: int) -> Iterator[None]:
    """NumPy's global generator seeded inside the block (ART draws its random starts from it), restored after."""
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


def trades_loss(
    logits_clean: torch.Tensor,
    logits_adv: torch.Tensor,
    y: torch.Tensor,
    beta: float,
    ce: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
) -> torch.Tensor:
    """CE(f(x), y) + beta * KL(softmax f(x) || softmax f(x_adv)), the KL averaged over the batch (as TRADES does)."""
    kl = F.kl_div(F.log_softmax(logits_adv, 1), F.softmax(logits_clean, 1), reduction="batchmean")
    return ce(logits_clean, y) + beta * kl


class AdversarialStep:
    """One training's adversary: makes the examples of each batch and gives the method's loss on them."""

    def __init__(
        self,
        net: nn.Module,
        cfg: AdversarialTrainingConfig,
        input_shape: tuple[int, ...],
        n_classes: int,
        bounds: tuple[float, float],
        device: torch.device,
    ):
        from bridge.attacks.adapter import Unsupported

        self.net = net
        self.cfg = cfg
        self.spec = cfg.spec()
        adapter, translation = cfg.translate(n_classes)
        self.shared = SharedModel(_Training(net), input_shape, n_classes, bounds, device, name="training")
        self.counters = Counters()
        with self.shared.eval_mode(), _frozen(net):
            try:
                self.attack = adapter.build(translation, self.spec, self.shared)
            except Unsupported as exc:
                raise ValueError(f"adversarial training attack {self.spec.label}: {exc}") from None

    def examples(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The attack's examples for (x, y), made in eval mode with frozen parameters; passes are counted."""
        with (
            self.shared.eval_mode(),
            _frozen(self.net),
            self.shared.counting() as counters,
            self.shared.query_budget(x, y, self.spec.max_queries),
        ):
            x_adv = self.attack(x, y, None)
        for name, value in vars(counters).items():
            setattr(self.counters, name, getattr(self.counters, name) + value)
        return x_adv.detach()

    def loss(
        self, x: torch.Tensor, y: torch.Tensor, ce: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    ) -> tuple[torch.Tensor, int, int]:
        """The method's loss on the batch (net in train mode), and the clean and adversarial correct counts.

        The clean count comes from the clean logits TRADES computes anyway (train mode); pgd_at and fgsm_at never
        train on the clean batch, so theirs comes from an eval-mode pass made before the attack.
        """
        if self.cfg.method == "trades":
            x_adv = self.examples(x, y)
            logits_clean, logits_adv = self.net(x), self.net(x_adv)
            loss = trades_loss(logits_clean, logits_adv, y, self.cfg.beta, ce)
            return loss, int((logits_clean.argmax(1) == y).sum()), int((logits_adv.argmax(1) == y).sum())
        with torch.no_grad(), self.shared.eval_mode():
            clean_correct = int((self.net(x).argmax(1) == y).sum())
        logits_adv = self.net(self.examples(x, y))
        return ce(logits_adv, y), clean_correct, int((logits_adv.argmax(1) == y).sum())
