"""torchattacks 3.5.1 behind the bridge's attack interface.

torchattacks needs no wrapper: each class takes the SharedModel itself and reads the device from its
parameters. It clamps every result to [0,1] (hard-coded), so it only runs models with those bounds.
Targeted attacks use `set_mode_targeted_by_label`, so the bridge's targets are passed as the labels;
untargeted attacks always receive the true labels. Restarts run as a `MultiAttack` of R copies.
"""

from __future__ import annotations

import torch

from bridge.adapter import AttackFn, Entry, ToolkitAdapter, Translation, Unsupported
from bridge.shared_model import SharedModel
from bridge.spec import AttackSpec

UNIT_BOUNDS = (0.0, 1.0)

RESTARTS_NOTE = (
    "restarts > 1 run as torchattacks.MultiAttack of R copies: each restart attacks only the samples still "
    "classified as their label, and samples no restart fooled come back as the clean input, not the last attempt."
)


def _no_targeted_restarts(spec: AttackSpec) -> str | None:
    """MultiAttack counts success as prediction != label, so with targets as labels it inverts success."""
    if spec.targeted != "none" and (spec.restarts or 1) > 1:
        return (
            "torchattacks MultiAttack (its restart mechanism) counts a sample as fooled when the prediction differs "
            "from the label it was given; with targets it discards every restart that reached its target and returns "
            "the clean input, so targeted restarts > 1 are not supported"
        )
    return None


def _cw_unsupported(spec: AttackSpec) -> str | None:
    if spec.binary_search_steps != 1:
        return (
            "torchattacks CW has no binary search over the constant (c stays at initial_const); "
            f"binary_search_steps must be 1, got {spec.binary_search_steps}"
        )
    return None


def _deepfool_unsupported(spec: AttackSpec) -> str | None:
    if spec.candidates is not None:
        return (
            "torchattacks DeepFool always uses all classes as candidates; "
            f"candidates must be unset, got {spec.candidates}"
        )
    return None


class TorchattacksAdapter(ToolkitAdapter):
    name = "torchattacks"
    wired = frozenset({"model"})
    table = {
        ("fgsm", "linf"): Entry(
            native="FGSM",
            kwargs=lambda spec, n_classes: {"eps": spec.eps},
            losses=("ce",),
        ),
        # BIM's steps=0 would select the paper's step count; the spec never produces it (steps >= 1).
        ("bim", "linf"): Entry(
            native="BIM",
            kwargs=lambda spec, n_classes: {"eps": spec.eps, "alpha": spec.step_size, "steps": spec.steps},
            losses=("ce",),
        ),
        ("pgd", "linf"): Entry(
            native="PGD",
            kwargs=lambda spec, n_classes: {
                "eps": spec.eps,
                "alpha": spec.step_size,
                "steps": spec.steps,
                "random_start": spec.random_start,
            },
            losses=("ce",),
            unsupported=_no_targeted_restarts,
            notes=RESTARTS_NOTE,
        ),
        ("pgd", "l2"): Entry(
            native="PGDL2",
            kwargs=lambda spec, n_classes: {
                "eps": spec.eps,
                "alpha": spec.step_size,
                "steps": spec.steps,
                "random_start": spec.random_start,
                "eps_for_division": 1e-10,
            },
            losses=("ce",),
            unsupported=_no_targeted_restarts,
            notes=(
                "The step direction is the batch-mean CE gradient divided by its norm + eps_for_division (1e-10), "
                "which shrinks steps for confident samples; the random start is a Gaussian direction with a "
                "U(0,1)*eps radius, not uniform in the ball. " + RESTARTS_NOTE
            ),
        ),
        ("mifgsm", "linf"): Entry(
            native="MIFGSM",
            kwargs=lambda spec, n_classes: {
                "eps": spec.eps,
                "alpha": spec.step_size,
                "steps": spec.steps,
                "decay": spec.decay,
            },
            losses=("ce",),
        ),
        ("cw", "l2"): Entry(
            native="CW",
            kwargs=lambda spec, n_classes: {
                "c": spec.initial_const,
                "kappa": spec.confidence,
                "steps": spec.steps,
                "lr": spec.step_size,
            },
            losses=("margin",),
            unsupported=_cw_unsupported,
            notes=(
                "No binary search: c stays at initial_const, and samples it does not fool come back as the clean "
                "input. It stops early when the batch's summed cost rose (checked every steps/10 steps)."
            ),
        ),
        ("deepfool", "l2"): Entry(
            native="DeepFool",
            kwargs=lambda spec, n_classes: {"steps": spec.steps, "overshoot": spec.overshoot},
            losses=("logits",),
            targeted=False,
            unsupported=_deepfool_unsupported,
            notes=(
                "The overshoot scales each step, not the total perturbation, so results end on the decision "
                "boundary and some are not misclassified; all classes are candidates; it loops per sample."
            ),
        ),
    }

    def native_class(self, native: str) -> type:
        import torchattacks

        return getattr(torchattacks, native)

    def build(self, translation: Translation, spec: AttackSpec, model: SharedModel) -> AttackFn:
        if model.bounds != UNIT_BOUNDS:
            raise Unsupported(
                f"torchattacks clamps inputs to [0, 1] (hard-coded); the model's bounds are {model.bounds}"
            )
        import torchattacks

        cls = self.native_class(translation.native)
        targeted = spec.targeted != "none"
        copies = [cls(model, **translation.kwargs) for _ in range(spec.restarts or 1)]
        if targeted:
            for atk in copies:
                atk.set_mode_targeted_by_label(quiet=True)
        native = copies[0] if len(copies) == 1 else torchattacks.MultiAttack(copies, verbose=False)

        def attack(x: torch.Tensor, y: torch.Tensor, targets: torch.Tensor | None) -> torch.Tensor:
            if targeted and targets is None:
                raise ValueError(f"{spec.label}: a targeted attack needs targets")
            labels = targets if targeted else y
            return self.output(native(x, labels, **translation.call_kwargs), model)

        return attack


ADAPTER = TorchattacksAdapter()
