"""ART 1.20.1 adapter: the canonical attacks as ART evasion classes on a `PyTorchClassifier` of the shared model.

ART works on numpy arrays, so each batch goes to the host and back; the estimator wraps the SharedModel
itself (a plain nn.Module, so the bridge's counting hooks fire) and keeps it on its device. Untargeted
attacks always get the true labels: ART would otherwise attack the model's predictions. Classes that take
no labels at all (DeepFool, NewtonFool, and Boundary/HopSkipJump when untargeted) start from the model's
prediction, so they run only on correctly classified samples. ART is imported only when a class is needed.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from bridge.attacks.adapter import (
    RANDOM_START,
    RESTARTS,
    TARGETED,
    UNTARGETED,
    AttackFn,
    Entry,
    ToolkitAdapter,
    Translation,
    Unsupported,
    loss_is,
)
from bridge.attacks.spec import AttackSpec
from bridge.models.keras import KerasModel
from bridge.models.shared import SharedModel

# Line-search limits of ART's CW L2 (its defaults, written out): per iteration the step is halved or doubled
# at most this many times. The spec has no such knob; the other toolkits use Adam with a fixed rate.
CW_MAX_HALVING = 5
CW_MAX_DOUBLING = 5

# CW Linf: Carlini & Wagner's own schedule (their code's constants, also ART's defaults): after each success
# tau shrinks by DECREASE_FACTOR; for each tau, c grows by CONST_FACTOR from initial_const up to LARGEST_CONST.
CWINF_DECREASE_FACTOR = 0.9
CWINF_LARGEST_CONST = 20.0
CWINF_CONST_FACTOR = 2.0

# APGD: ART hard-codes the checkpoint rule's rho (and the momentum 0.75), as in the paper.
APGD_RHO = 0.75

# Standard AutoAttack (Croce & Hein 2020, version='standard'): 100 iterations and 1 restart for APGD-CE and
# APGD-T with an initial step of 2*eps, Square with 5000 queries, p_init 0.8 and 1 restart.
AA_APGD_STEPS = 100
AA_RESTARTS = 1
AA_SQUARE_QUERIES = 5000
AA_SQUARE_P_INIT = 0.8

# Boundary attack: ART's trust-region search, written out (its defaults). Per step it draws up to NUM_TRIAL
# batches of SAMPLE_SIZE orthogonal candidates; the first adversarial point is searched among INIT_SIZE
# uniform draws. It stops once the source step falls below MIN_EPSILON, Foolbox's `source_step_convergance`
# default (ART's own default, 0, never stops early).
BOUNDARY_NUM_TRIAL = 25
BOUNDARY_SAMPLE_SIZE = 20
BOUNDARY_INIT_SIZE = 100
BOUNDARY_MIN_EPSILON = 1e-7

# HopSkipJump: at most this many uniform draws for the first adversarial point (ART's default).
HSJ_INIT_SIZE = 100

Kwargs = Callable[[AttackSpec, int], dict[str, Any]]

# ART classes that send float64 arrays to the model (ART issue #2475): the adapter casts their inputs.
FLOAT64_CLASSES = frozenset({"BoundaryAttack", "HopSkipJump"})
# ART classes that read the estimator's output as probabilities: they get softmax(model(x)).
PROBABILITY_CLASSES = frozenset({"NewtonFool", "SimBA", "VirtualAdversarialMethod"})
# ART classes that take no labels and attack the model's prediction (untargeted): run on correct samples only.
PREDICTION_CLASSES = frozenset({"DeepFool", "NewtonFool"})

# ART classes that refuse TensorFlow estimators, with the reason shown for a Keras model.
KERAS_REFUSED = {
    "MomentumIterativeMethod": "art MomentumIterativeMethod is disabled for TensorFlow in ART 1.20.1 (ART issue #2439)",
}

APGD_LOSSES = {"ce": "cross_entropy", "dlr": "difference_logits_ratio"}


def _targeted(spec: AttackSpec) -> bool:
    return spec.targeted != "none"


def _fgm(norm: float) -> Kwargs:
    """One step of exactly eps: `minimal=False` makes ART ignore eps_step, which is set to eps to say so."""

    def kwargs(spec: AttackSpec, n_classes: int) -> dict[str, Any]:
        return {
            "norm": norm,
            "eps": spec.eps,
            "eps_step": spec.eps,
            "targeted": _targeted(spec),
            "num_random_init": 0,
            "batch_size": spec.batch_size,
            "minimal": False,
            "summary_writer": False,
        }

    return kwargs


def _bim(spec: AttackSpec, n_classes: int) -> dict[str, Any]:
    return {
        "eps": spec.eps,
        "eps_step": spec.step_size,
        "max_iter": spec.steps,
        "targeted": _targeted(spec),
        "batch_size": spec.batch_size,
        "verbose": False,
    }


def _pgd(norm: float) -> Kwargs:
    """ART's own restarts: num_random_init = R random starts, 0 = start at the clean input."""

    def kwargs(spec: AttackSpec, n_classes: int) -> dict[str, Any]:
        return {
            "norm": norm,
            "eps": spec.eps,
            "eps_step": spec.step_size,
            "decay": None,
            "max_iter": spec.steps,
            "targeted": _targeted(spec),
            "num_random_init": spec.restarts if spec.random_start else 0,
            "batch_size": spec.batch_size,
            "random_eps": False,
            "summary_writer": False,
            "verbose": False,
        }

    return kwargs


def _mifgsm(spec: AttackSpec, n_classes: int) -> dict[str, Any]:
    return {
        "norm": np.inf,
        "eps": spec.eps,
        "eps_step": spec.step_size,
        "decay": spec.decay,
        "max_iter": spec.steps,
        "targeted": _targeted(spec),
        "batch_size": spec.batch_size,
        "verbose": False,
    }


def _apgd(norm: float) -> Kwargs:
    """APGD always starts at a random point: nb_random_init = R runs, each from a fresh random start."""

    def kwargs(spec: AttackSpec, n_classes: int) -> dict[str, Any]:
        return {
            "norm": norm,
            "eps": spec.eps,
            "eps_step": spec.step_size,
            "max_iter": spec.steps,
            "targeted": _targeted(spec),
            "nb_random_init": spec.restarts,
            "batch_size": spec.batch_size,
            "loss_type": APGD_LOSSES[spec.loss],
            "verbose": False,
        }

    return kwargs


def _target_classes(spec: AttackSpec, n_classes: int) -> int:
    if spec.n_target_classes > n_classes - 1:
        raise Unsupported(
            f"n_target_classes={spec.n_target_classes} needs at least {spec.n_target_classes + 1} classes; "
            f"the model has {n_classes}"
        )
    return spec.n_target_classes


def _apgdt(norm: float) -> Kwargs:
    """One targeted APGD on the DLR loss; the adapter runs it once per target class (`MultiTargeted`)."""

    def kwargs(spec: AttackSpec, n_classes: int) -> dict[str, Any]:
        _target_classes(spec, n_classes)
        return {**_apgd(norm)(spec, n_classes), "targeted": True, "loss_type": "difference_logits_ratio"}

    return kwargs


def _autoattack(norm: float) -> Kwargs:
    """ART's AutoAttack with an explicit list: APGD-CE, APGD-T, Square, as in standard AutoAttack (no FAB-T).

    The sub-attacks need the estimator, so `attacks` holds their descriptions ({class, kwargs}, and for
    APGD-T the number of target classes); `build` constructs them.
    """

    def kwargs(spec: AttackSpec, n_classes: int) -> dict[str, Any]:
        apgd = {
            "norm": norm,
            "eps": spec.eps,
            "eps_step": 2 * spec.eps,
            "max_iter": AA_APGD_STEPS,
            "targeted": False,
            "nb_random_init": AA_RESTARTS,
            "batch_size": spec.batch_size,
            "loss_type": "cross_entropy",
            "verbose": False,
        }
        apgdt = {**apgd, "targeted": True, "loss_type": "difference_logits_ratio"}
        square = {
            "norm": norm,
            "adv_criterion": None,
            "loss": None,
            "max_iter": AA_SQUARE_QUERIES,
            "eps": spec.eps,
            "p_init": AA_SQUARE_P_INIT,
            "nb_restarts": AA_RESTARTS,
            "batch_size": spec.batch_size,
            "verbose": False,
        }
        return {
            "norm": norm,
            "eps": spec.eps,
            "eps_step": 2 * spec.eps,  # only shapes ART's default list, which an explicit list replaces
            "attacks": [
                {"class": "AutoProjectedGradientDescent", "kwargs": apgd},
                {
                    "class": "AutoProjectedGradientDescent",
                    "kwargs": apgdt,
                    "n_target_classes": _target_classes(spec, n_classes),
                },
                {"class": "SquareAttack", "kwargs": square},
            ],
            "batch_size": spec.batch_size,
            "estimator_orig": None,
            "targeted": False,
            "parallel_pool_size": 0,
        }

    return kwargs


def _square(norm: float) -> Kwargs:
    def kwargs(spec: AttackSpec, n_classes: int) -> dict[str, Any]:
        return {
            "norm": norm,
            "adv_criterion": None,
            "loss": None,
            "max_iter": spec.max_queries,
            "eps": spec.eps,
            "p_init": spec.p_init,
            "nb_restarts": spec.restarts,
            "batch_size": spec.batch_size,
            "verbose": False,
        }

    return kwargs


def _cw(spec: AttackSpec, n_classes: int) -> dict[str, Any]:
    return {
        "confidence": spec.confidence,
        "targeted": _targeted(spec),
        "learning_rate": spec.step_size,
        "binary_search_steps": spec.binary_search_steps,
        "max_iter": spec.steps,
        "initial_const": spec.initial_const,
        "max_halving": CW_MAX_HALVING,
        "max_doubling": CW_MAX_DOUBLING,
        "batch_size": spec.batch_size,
        "verbose": False,
    }


def _cw_linf(spec: AttackSpec, n_classes: int) -> dict[str, Any]:
    return {
        "confidence": spec.confidence,
        "targeted": False,  # its targeted mode is broken in 1.20.1 (see _CW_LINF_NOTE)
        "learning_rate": spec.step_size,
        "max_iter": spec.steps,
        "decrease_factor": CWINF_DECREASE_FACTOR,
        "initial_const": spec.initial_const,
        "largest_const": CWINF_LARGEST_CONST,
        "const_factor": CWINF_CONST_FACTOR,
        "batch_size": spec.batch_size,
        "verbose": False,
    }


def _ead(spec: AttackSpec, n_classes: int) -> dict[str, Any]:
    return {
        "confidence": spec.confidence,
        "targeted": _targeted(spec),
        "learning_rate": spec.step_size,
        "binary_search_steps": spec.binary_search_steps,
        "max_iter": spec.steps,
        "beta": spec.beta,
        "initial_const": spec.initial_const,
        "batch_size": spec.batch_size,
        "decision_rule": spec.decision_rule,
        "verbose": False,
    }


def _deepfool(spec: AttackSpec, n_classes: int) -> dict[str, Any]:
    return {
        "max_iter": spec.steps,
        "epsilon": spec.overshoot,
        "nb_grads": spec.candidates if spec.candidates is not None else n_classes,
        "batch_size": spec.batch_size,
        "verbose": False,
    }


def _jsma(spec: AttackSpec, n_classes: int) -> dict[str, Any]:
    return {"theta": spec.theta, "gamma": spec.gamma, "batch_size": spec.batch_size, "verbose": False}


def _newtonfool(spec: AttackSpec, n_classes: int) -> dict[str, Any]:
    return {"max_iter": spec.steps, "eta": spec.step_size, "batch_size": spec.batch_size, "verbose": False}


def _boundary(spec: AttackSpec, n_classes: int) -> dict[str, Any]:
    return {
        "batch_size": spec.batch_size,
        "targeted": _targeted(spec),  # explicit: ART's default is targeted=True, even for true labels
        "delta": spec.spherical_step,
        "epsilon": spec.source_step,
        "step_adapt": 1 / spec.step_adaptation,
        "max_iter": spec.steps,
        "num_trial": BOUNDARY_NUM_TRIAL,
        "sample_size": BOUNDARY_SAMPLE_SIZE,
        "init_size": BOUNDARY_INIT_SIZE,
        "min_epsilon": BOUNDARY_MIN_EPSILON,
        "verbose": False,
    }


def _hopskipjump(norm: float) -> Kwargs:
    def kwargs(spec: AttackSpec, n_classes: int) -> dict[str, Any]:
        return {
            "batch_size": spec.batch_size,
            "targeted": _targeted(spec),
            "norm": norm,
            "max_iter": spec.steps,
            "max_eval": spec.max_evals,
            "init_eval": spec.init_evals,
            "init_size": HSJ_INIT_SIZE,
            "verbose": False,
        }

    return kwargs


def _rho(spec: AttackSpec) -> str | None:
    if spec.rho != APGD_RHO:
        return f"art AutoProjectedGradientDescent hard-codes rho={APGD_RHO} (its checkpoint rule); got rho={spec.rho}"
    return None


def _cw_linf_unsupported(spec: AttackSpec) -> str | None:
    if spec.binary_search_steps != 1:
        return (
            "art CarliniLInfMethod has no binary search over c: for each tau it raises c from initial_const by "
            f"x{CWINF_CONST_FACTOR} up to {CWINF_LARGEST_CONST}; binary_search_steps must be 1"
        )
    return None


def _jsma_unsupported(spec: AttackSpec) -> str | None:
    if not 0 < spec.gamma <= 1:
        return f"art SaliencyMapMethod needs 0 < gamma <= 1 (the fraction of inputs it may change), got {spec.gamma}"
    return None


def _square_unsupported(spec: AttackSpec) -> str | None:
    if not 0 < spec.p_init < 1:
        return f"art SquareAttack needs 0 < p_init < 1, got {spec.p_init}"
    return None


def _boundary_unsupported(spec: AttackSpec) -> str | None:
    if spec.step_adaptation <= 1:
        return (
            "art BoundaryAttack multiplies its steps by step_adapt = 1/step_adaptation, which must lie in (0, 1): "
            f"step_adaptation must be > 1, got {spec.step_adaptation}"
        )
    return None


_RESTARTS = (RESTARTS, "A later restart replaces a sample only where ART's own check finds it adversarial.")
_L2_PGD = (
    "Each step clips to the bounds and then projects onto the eps-ball (Foolbox and torchattacks project, then "
    "clip), so results differ near the box edges.",
    (RANDOM_START, "The L2 random start is uniform in the ball (torchattacks: Gaussian direction, U(0,1)*eps radius)."),
    _RESTARTS,
)
_L1_PGD = (
    "Each step moves only the coordinate with the largest |gradient| by eps_step (Foolbox: the L1-normalised "
    "gradient), clips, then projects by rescaling; it stalls once that coordinate sits at a bound, so it often "
    "changes only a few inputs and spends far less than eps.",
    (RANDOM_START, "The random start is uniform in the L1 ball."),
    _RESTARTS,
)
_L1_FGM = (
    "The exact L1 steepest step: only the input with the largest |gradient| moves, by eps, then is clipped to the "
    "bounds, so with eps above the bounds' width it spends at most that width (Foolbox: eps along the "
    "L1-normalised gradient, a dense step)."
)
_CW_NOTE = (
    "Plain gradient steps in tanh space with a per-sample line search (learning_rate is the initial step, halved "
    f"or doubled up to {CW_MAX_HALVING}/{CW_MAX_DOUBLING} times), not Adam, and a gradient that ignores the hinge, "
    "so a sample usually stays at its first adversarial point until the next binary-search step. Binary search "
    "as in Foolbox (torchattacks has none); samples never made adversarial come back unchanged."
)
_CW_LINF_NOTE = (
    "Carlini & Wagner's Linf algorithm, one sample at a time: Adam (learning_rate, max_iter steps, stops early "
    "once the loss is below 0.001) on c*margin + sum(max(|delta|-tau, 0)) in tanh space; for each tau, c runs "
    f"from initial_const up by x{CWINF_CONST_FACTOR} below {CWINF_LARGEST_CONST}; after a success tau drops to "
    f"the achieved Linf distance x{CWINF_DECREASE_FACTOR}, down to 1/256. No binary search (binary_search_steps "
    "must be 1); batch_size is unused. Samples never made adversarial come back unchanged. Untargeted only: "
    "ART 1.20.1's targeted mode keeps a point when the prediction differs from y, which for a target means any "
    "point that misses it."
)
_EAD_NOTE = (
    "FISTA with a square-root decaying learning rate and the element-wise shrinkage (beta) as in the paper; no "
    "early abort. When the margin (with confidence) is already met the whole gradient, L2 term included, is "
    "zeroed. decision_rule picks the best point by the elastic-net or L1 distance. The shrinkage clips to [0, 1] "
    "whatever the bounds, so the adapter refuses other bounds. Samples never made adversarial come back unchanged."
)
_DEEPFOOL_NOTE = (
    "L2 only. Overshoot scales the total perturbation, x0 + (1+overshoot)*sum(steps), as in Foolbox "
    "(torchattacks: per step). nb_grads ranks classes by the clean prediction but takes the union of every "
    "sample's top classes over the batch. ART ignores labels and starts from the prediction, so the adapter "
    "runs it only on correctly classified samples (one extra forward pass) and returns the others unchanged."
)
# One APGD run as ART does it; the DLR clauses hold where the run optimises DLR (targeted: APGD-T's loss).
_APGD_RUN = (
    "rho and the momentum are fixed at 0.75 (ART hard-codes both, as the paper); eps_step is the initial step. "
    "Each run starts at a uniform random point in the ball and ART keeps its LAST iterate, only where its own "
    "check finds it adversarial (the original keeps any adversarial iterate met on the way)."
)
_DLR = "ART's DLR has no 1e-12 in its denominator."
_TARGETED_DLR = (
    "Its targeted DLR is the untargeted formula with y = target, minimised: -(z_t - max_{j!=t} z_j)/(z_pi1 - z_pi3) "
    "(the original: -(z_y - z_t)/(z_pi1 - (z_pi3+z_pi4)/2))."
)
_APGD_NOTE = (
    _APGD_RUN,
    (loss_is("dlr"), _DLR),
    (loss_is("dlr") & TARGETED, _TARGETED_DLR),
    (RESTARTS, "nb_random_init = restarts runs, each on the samples not yet fooled."),
    "Samples never fooled come back at their last random start, not the clean input.",
)
_APGD_L1_NOTE = (
    _APGD_NOTE,
    "L1: steps along the L1-normalised gradient and projects by rescaling; this is not the sparse APGD-L1 of "
    "Croce & Hein (2021).",
)
_APGDT_NOTE = (
    "APGD-T as in AutoAttack, driven by the adapter: for k = 1..n_target_classes, the k-th most likely wrong class "
    "by the clean logits is the target of one targeted APGD call (DLR; restarts = its random starts) on the "
    "samples the model still classifies correctly; a sample keeps the first result the model misclassifies "
    "(checked by the bridge's own forward pass), the others come back clean.",
    _APGD_RUN,
    _DLR,
    _TARGETED_DLR,
)
_SQUARE_RUN = (
    "loss=None is ART's margin: the true class's logit minus the second-largest logit, i.e. the original margin "
    "loss for every sample ART still attacks (those still classified correctly); adv_criterion=None is "
    "argmax != label. max_iter = max_queries iterations, but each iteration predicts the whole batch and "
    "re-evaluates the current point as well as the candidate: about 3 forward passes per sample per iteration "
    "(the original: 1), so the bridge's query budget stops ART after about a third of its iterations."
)
_SQUARE_L2 = (
    "L2: ART divides the new window by the energy the original multiplies it by, then rescales the whole "
    "perturbation to eps, so its proposals differ from the paper's; on inputs under 10 pixels a side its "
    "initial tiles are empty (0/0, a RuntimeWarning) and the initialisation is skipped."
)
_SQUARE_NOTE = (_SQUARE_RUN, (RESTARTS, "Restarts start again from the clean input for the samples not yet fooled."))
_AUTOATTACK_NOTE = (
    "Standard AutoAttack minus FAB-T (ART has no FAB): ART's AutoAttack runs APGD-CE, then APGD-T (the adapter's "
    "loop over the top n_target_classes, as in the apgdt cell), then Square, each on the samples still robust, "
    "keeping per sample the first result that is misclassified and within eps (ART's own check); robust samples "
    "come back clean. Its targeted=True mode would instead rerun every listed attack against every other class "
    "in index order, so it stays False.",
    "APGD:",
    _APGD_RUN,
    _DLR,
    _TARGETED_DLR,
    "Square:",
    _SQUARE_RUN,
)
_JSMA_NOTE = (
    "Always targeted: ART treats y as the target (y=None would pick random targets), so the adapter always passes "
    "the bridge's targets. Its saliency is only the target logit's gradient: each step raises by theta the two "
    "inputs with the largest gradient (Papernot et al. and torchattacks: pairs scored against the other classes' "
    "gradient too); it stops at the target or once a fraction gamma of the inputs has changed."
)
_NEWTONFOOL_NOTE = (
    "ART reads the estimator's output as softmax probabilities, so it gets softmax(model(x)) (on logits it would "
    "compare a logit with 1/n_classes). It takes no labels and lowers the predicted class's probability "
    "towards 1/n_classes for exactly max_iter steps (no early stop), then clips to the bounds once; the adapter "
    "runs it only on correctly classified samples and returns the others unchanged."
)
_DECISION_INIT = (
    "ART draws its first adversarial point with an unseeded np.random.RandomState, so results would change from "
    "run to run whatever the seed: the adapter draws that point itself, ART's way (uniform in the bounds, the "
    "first of at most init_size draws that is adversarial) from the cell's seed, and passes it as x_adv_init; "
    "samples without one come back unchanged, as in ART.",
    (
        UNTARGETED,
        "Untargeted, ART ignores labels and attacks the prediction, so only correctly classified samples are attacked.",
    ),
)
_BOUNDARY_NOTE = (
    "targeted is always explicit (ART's default targeted=True would treat true labels as targets). ART shrinks "
    "a step by multiplying with step_adapt < 1 where Foolbox multiplies by step_adaptation > 1: step_adapt = "
    "1/step_adaptation. One ART step is a trust-region search: up to num_trial batches of sample_size "
    "orthogonal candidates, then up to num_trial source steps, so a step costs many more queries than a Foolbox "
    "step.",
    _DECISION_INIT,
)
_HSJ_NOTE = (
    "targeted is always explicit. ART binary-searches the first adversarial point towards the input in L2 (also "
    "for linf), then iterates with max_eval/init_eval gradient estimates.",
    _DECISION_INIT,
)

ART_TABLE: dict[tuple[str, str], Entry] = {
    ("fgsm", "linf"): Entry("FastGradientMethod", _fgm(np.inf), ("ce",)),
    ("fgsm", "l2"): Entry("FastGradientMethod", _fgm(2), ("ce",)),
    ("fgsm", "l1"): Entry("FastGradientMethod", _fgm(1), ("ce",), notes=_L1_FGM),
    ("bim", "linf"): Entry("BasicIterativeMethod", _bim, ("ce",)),
    ("pgd", "linf"): Entry("ProjectedGradientDescent", _pgd(np.inf), ("ce",), notes=_RESTARTS),
    ("pgd", "l2"): Entry("ProjectedGradientDescent", _pgd(2), ("ce",), notes=_L2_PGD),
    ("pgd", "l1"): Entry("ProjectedGradientDescent", _pgd(1), ("ce",), notes=_L1_PGD),
    ("mifgsm", "linf"): Entry(
        "MomentumIterativeMethod",
        _mifgsm,
        ("ce",),
        notes="Accumulates the L1-normalised gradient as Dong et al. and torchattacks do (Foolbox: its sign).",
    ),
    ("apgd", "linf"): Entry(
        "AutoProjectedGradientDescent", _apgd(np.inf), ("ce", "dlr"), unsupported=_rho, notes=_APGD_NOTE
    ),
    ("apgd", "l2"): Entry("AutoProjectedGradientDescent", _apgd(2), ("ce", "dlr"), unsupported=_rho, notes=_APGD_NOTE),
    ("apgd", "l1"): Entry(
        "AutoProjectedGradientDescent", _apgd(1), ("ce", "dlr"), unsupported=_rho, notes=_APGD_L1_NOTE
    ),
    ("apgdt", "linf"): Entry(
        "AutoProjectedGradientDescent", _apgdt(np.inf), ("dlr",), targeted=False, unsupported=_rho, notes=_APGDT_NOTE
    ),
    ("apgdt", "l2"): Entry(
        "AutoProjectedGradientDescent", _apgdt(2), ("dlr",), targeted=False, unsupported=_rho, notes=_APGDT_NOTE
    ),
    ("autoattack", "linf"): Entry(
        "AutoAttack", _autoattack(np.inf), ("ensemble",), targeted=False, notes=_AUTOATTACK_NOTE
    ),
    ("autoattack", "l2"): Entry(
        "AutoAttack", _autoattack(2), ("ensemble",), targeted=False, notes=(_AUTOATTACK_NOTE, _SQUARE_L2)
    ),
    ("square", "linf"): Entry(
        "SquareAttack",
        _square(np.inf),
        ("margin",),
        targeted=False,
        unsupported=_square_unsupported,
        notes=_SQUARE_NOTE,
    ),
    ("square", "l2"): Entry(
        "SquareAttack",
        _square(2),
        ("margin",),
        targeted=False,
        unsupported=_square_unsupported,
        notes=(_SQUARE_NOTE, _SQUARE_L2),
    ),
    ("cw", "l2"): Entry("CarliniL2Method", _cw, ("margin",), notes=_CW_NOTE),
    ("cw", "linf"): Entry(
        "CarliniLInfMethod",
        _cw_linf,
        ("margin",),
        targeted=False,
        unsupported=_cw_linf_unsupported,
        notes=_CW_LINF_NOTE,
    ),
    ("ead", "l1"): Entry("ElasticNet", _ead, ("margin",), notes=_EAD_NOTE),
    ("deepfool", "l2"): Entry("DeepFool", _deepfool, ("logits",), targeted=False, notes=_DEEPFOOL_NOTE),
    ("jsma", "l0"): Entry("SaliencyMapMethod", _jsma, ("logits",), unsupported=_jsma_unsupported, notes=_JSMA_NOTE),
    ("newtonfool", "l2"): Entry("NewtonFool", _newtonfool, ("probability",), targeted=False, notes=_NEWTONFOOL_NOTE),
    ("boundary", "l2"): Entry(
        "BoundaryAttack", _boundary, ("decision",), unsupported=_boundary_unsupported, notes=_BOUNDARY_NOTE
    ),
    ("hopskipjump", "l2"): Entry("HopSkipJump", _hopskipjump(2), ("decision",), notes=_HSJ_NOTE),
    ("hopskipjump", "linf"): Entry("HopSkipJump", _hopskipjump(np.inf), ("decision",), notes=_HSJ_NOTE),
}


class ModelView(torch.nn.Module):
    """The SharedModel as one ART class needs it: inputs cast to float32, outputs turned into probabilities.

    A plain nn.Module that calls the SharedModel as a whole, so the bridge's counting hooks still fire.
    """

    def __init__(self, model: SharedModel, float32: bool, softmax: bool):
        super().__init__()
        self.model = model
        self.float32 = float32
        self.softmax = softmax

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.model(x.to(torch.float32) if self.float32 else x)
        return out.softmax(1) if self.softmax else out


def pytorch_classifier(
    module: torch.nn.Module,
    input_shape: tuple[int, ...],
    n_classes: int,
    clip_values: tuple[float, float] | None,
    device: torch.device,
    loss: torch.nn.Module | None = None,
    optimizer: torch.optim.Optimizer | None = None,
) -> Any:
    """ART's PyTorchClassifier over `module` with every argument explicit (cross-entropy unless `loss` is given).

    ART's 'gpu' means cuda:{current_device()} and it moves the module there, so the current device is set first.
    """
    from art.estimators.classification import PyTorchClassifier

    if device.type == "cuda":
        torch.cuda.set_device(device)
    return PyTorchClassifier(
        model=module,
        loss=torch.nn.CrossEntropyLoss() if loss is None else loss,
        input_shape=tuple(input_shape),
        nb_classes=n_classes,
        optimizer=optimizer,
        use_amp=False,
        opt_level="O1",
        loss_scale="dynamic",
        channels_first=True,
        clip_values=clip_values,
        preprocessing_defences=None,
        preprocessing=(0.0, 1.0),
        postprocessing_defences=None,
        device_type="gpu" if device.type == "cuda" else "cpu",
    )


def _keras_classifier(model: KerasModel, native: str) -> Any:
    """ART's TensorFlowV2Classifier over a KerasModel (NCHW inputs, so channels_first=True), every argument explicit.

    Its `predict` runs the model through a `tf.function`; `KerasModel.counting` runs such functions eagerly, so
    the bridge's counters and query budget see every query. The loss is softmax cross-entropy on logits with
    one-hot labels, as PyTorchClassifier's CrossEntropyLoss.
    """
    import tensorflow as tf
    from art.estimators.classification import TensorFlowV2Classifier

    softmax = native in PROBABILITY_CLASSES

    def forward(x: Any, training: bool = False) -> Any:
        logits = model(tf.cast(x, tf.float32))
        return tf.nn.softmax(logits) if softmax else logits

    return TensorFlowV2Classifier(
        model=forward,
        nb_classes=model.n_classes,
        input_shape=model.input_shape,
        loss_object=tf.keras.losses.CategoricalCrossentropy(from_logits=not softmax),
        optimizer=None,
        train_step=None,
        channels_first=True,
        clip_values=model.bounds,
        preprocessing_defences=None,
        postprocessing_defences=None,
        preprocessing=(0.0, 1.0),
    )


class MultiTargeted:
    """APGD-T's target loop (Croce & Hein) around one targeted ART APGD; usable alone or inside ART's AutoAttack.

    For k = 1..n_target_classes the k-th most likely wrong class by the clean logits is the target of one run
    on the samples the model still classifies correctly; a sample keeps the first result the model
    misclassifies, judged by the SharedModel itself. To ART's AutoAttack it is an untargeted attack: it takes
    the true labels and succeeds when the label changes.
    """

    targeted = False

    def __init__(self, apgd: Any, model: SharedModel, n_target_classes: int):
        self.apgd = apgd
        self.model = model
        self.n_target_classes = n_target_classes

    def generate(self, x: np.ndarray, y: np.ndarray, **kwargs: Any) -> np.ndarray:
        labels = np.argmax(y, axis=1) if y.ndim == 2 else np.asarray(y)
        x_adv = x.astype(np.float32, copy=True)
        logits = self._logits(x_adv)
        todo = logits.argmax(1) == labels
        logits[np.arange(len(labels)), labels] = -np.inf
        ranked = np.argsort(-logits, axis=1, kind="stable")  # most likely wrong class first
        for k in range(self.n_target_classes):
            idx = np.flatnonzero(todo)
            if idx.size == 0:
                break
            out = self.apgd.generate(x[idx], y=ranked[idx, k], **kwargs).astype(np.float32)
            hit = self._logits(out).argmax(1) != labels[idx]
            x_adv[idx[hit]] = out[hit]
            todo[idx[hit]] = False
        return x_adv

    def _logits(self, x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return self.model(torch.as_tensor(x, device=self.model.device)).cpu().numpy()

    def __repr__(self) -> str:
        return f"MultiTargeted({self.apgd!r}, n_target_classes={self.n_target_classes})"


class ArtAdapter(ToolkitAdapter):
    """ART evasion attacks; numpy in and out, one PyTorchClassifier per built cell."""

    name = "art"
    table = ART_TABLE
    # The estimator: `estimator` in most attacks, `classifier` in CW, EAD, DeepFool, JSMA, NewtonFool, HSJ.
    wired = frozenset({"estimator", "classifier"})

    def native_class(self, native: str) -> type:
        return getattr(importlib.import_module("art.attacks.evasion"), native)

    def build(self, translation: Translation, spec: AttackSpec, model: SharedModel | KerasModel) -> AttackFn:
        name = translation.native
        if model.framework == "keras" and name in KERAS_REFUSED:
            raise Unsupported(KERAS_REFUSED[name])
        if translation.passthrough:
            return self._labelled(self.construct(name, translation.kwargs, model), translation, spec, model)
        lo, hi = model.bounds
        if name == "DeepFool" and hi - lo != 1.0:
            raise Unsupported(f"art DeepFool scales its steps by the bounds' width; needs width 1, got {model.bounds}")
        if name == "ElasticNet" and (lo, hi) != (0.0, 1.0):
            raise Unsupported(f"art ElasticNet's shrinkage clips to [0, 1] whatever the bounds; got {model.bounds}")
        if spec.attack == "apgdt":
            multi = MultiTargeted(self.construct(name, translation.kwargs, model), model, spec.n_target_classes)
            return self._labelled(multi, translation, spec, model)
        if spec.attack == "autoattack":
            return self._labelled(self._autoattack(translation, model), translation, spec, model)
        native = self.construct(name, translation.kwargs, model)
        if name in PREDICTION_CLASSES:
            return self._on_correct(native, model)
        if name in FLOAT64_CLASSES:
            return self._decision(native, spec, model)
        return self._labelled(native, translation, spec, model)

    def construct(self, native: str, kwargs: dict[str, Any], model: SharedModel, classifier: Any = None) -> Any:
        """The ART class `native` on (a view of) the SharedModel, with `kwargs` as given."""
        estimator = self.classifier(model, native) if classifier is None else classifier
        return self.native_class(native)(estimator, **kwargs)

    @staticmethod
    def classifier(model: SharedModel | KerasModel, native: str = "") -> Any:
        """ART's estimator over the SharedModel, every argument explicit, on the model's own device.

        ART's 'gpu' means cuda:{current_device()} and it moves the model there, so the current device is set
        to the model's first. Classes in FLOAT64_CLASSES / PROBABILITY_CLASSES see a `ModelView`. A Keras
        model gets a TensorFlowV2Classifier (`_keras_classifier`).
        """
        if model.framework == "keras":
            return _keras_classifier(model, native)
        device = model.device
        float32, softmax = native in FLOAT64_CLASSES, native in PROBABILITY_CLASSES
        module = ModelView(model, float32, softmax) if float32 or softmax else model
        classifier = pytorch_classifier(module, model.input_shape, model.n_classes, model.bounds, device)
        if model.device != device:
            raise RuntimeError(f"ART moved the model from {device} to {model.device}")
        return classifier

    def _labelled(self, native: Any, translation: Translation, spec: AttackSpec, model: SharedModel) -> AttackFn:
        """The usual call: targets as y when targeted, else the true labels (never None), one-hot.

        One-hot is the label format every ART class accepts; a few (SimBA) reject class indices.
        """

        def attack(x: torch.Tensor, y: torch.Tensor, targets: torch.Tensor | None) -> torch.Tensor:
            labels = self.goal(spec, y, targets)  # never None: ART would attack its predictions instead
            x_adv = native.generate(_numpy(x), y=_one_hot(labels, model.n_classes), **translation.call_kwargs)
            return self.output(x_adv, model)

        return attack

    def _autoattack(self, translation: Translation, model: SharedModel) -> Any:
        """ART's AutoAttack over the described sub-attacks, all on one estimator; each described fully."""
        classifier = self.classifier(model)
        attacks = []
        for sub in translation.kwargs["attacks"]:
            self.check(Translation(self.name, sub["class"], sub["kwargs"], {}, ""))
            attack = self.construct(sub["class"], sub["kwargs"], model, classifier)
            if "n_target_classes" in sub:
                attack = MultiTargeted(attack, model, sub["n_target_classes"])
            attacks.append(attack)
        return self.construct("AutoAttack", {**translation.kwargs, "attacks": attacks}, model, classifier)

    def _on_correct(self, native: Any, model: SharedModel) -> AttackFn:
        """Classes that take no labels, on the correctly classified samples; the others are already misclassified."""

        def attack(x: torch.Tensor, y: torch.Tensor, targets: torch.Tensor | None) -> torch.Tensor:
            with torch.no_grad():
                correct = model(x).argmax(1) == y
            x_adv = x.detach().clone()
            if correct.any():
                x_adv[correct] = self.output(native.generate(_numpy(x[correct])), model)
            return self.output(x_adv, model)

        return attack

    def _decision(self, native: Any, spec: AttackSpec, model: SharedModel) -> AttackFn:
        """Boundary and HopSkipJump from a seeded first adversarial point (ART's own draw is unseeded)."""
        targeted = _targeted(spec)
        generator = torch.Generator().manual_seed(spec.seed)
        tries = native.init_size
        hopskipjump = type(native).__name__ == "HopSkipJump"

        def attack(x: torch.Tensor, y: torch.Tensor, targets: torch.Tensor | None) -> torch.Tensor:
            goal = self.goal(spec, y, targets)
            with torch.no_grad():
                pred = model(x).argmax(1)
            todo = (pred != goal if targeted else pred == goal).nonzero().flatten()
            x_adv = x.detach().clone()
            if len(todo):
                start, found = _random_adversarial(model, x[todo], goal[todo], targeted, tries, generator)
                todo, start = todo[found], start[found]
            if len(todo):
                xs, goals, starts = _numpy(x[todo]), _numpy(goal[todo]), _numpy(start)
                if hopskipjump:  # ART's own step after its draw: an L2 binary search to x (private in 1.20.1)
                    lo, hi = model.bounds
                    starts = np.stack(
                        [
                            native._binary_search(s, o, int(g), norm=2, clip_min=lo, clip_max=hi, threshold=0.001)
                            for s, o, g in zip(starts, xs, goals, strict=True)
                        ]
                    )
                x_adv[todo] = self.output(native.generate(xs, y=goals, x_adv_init=starts.astype(np.float32)), model)
            return self.output(x_adv, model)

        return attack


def _random_adversarial(
    model: SharedModel, x: torch.Tensor, goal: torch.Tensor, targeted: bool, tries: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """ART's first point for decision attacks, seeded: per sample the first of at most `tries` uniform draws
    that is adversarial (classified as the target, or away from the label). Returns (points, found)."""
    lo, hi = model.bounds
    start = x.detach().clone()
    found = torch.zeros(len(x), dtype=torch.bool, device=x.device)
    for _ in range(tries):
        todo = (~found).nonzero().flatten()
        if not len(todo):
            break
        draw = (torch.rand(x[todo].shape, generator=generator) * (hi - lo) + lo).to(x.device)
        with torch.no_grad():
            pred = model(draw).argmax(1)
        hit = pred == goal[todo] if targeted else pred != goal[todo]
        start[todo[hit]] = draw[hit]
        found[todo[hit]] = True
    return start, found


def _one_hot(labels: torch.Tensor, n_classes: int) -> np.ndarray:
    return np.eye(n_classes, dtype=np.float32)[_numpy(labels)]


def _numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy()


ADAPTER = ArtAdapter()
