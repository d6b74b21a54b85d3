"""Sanity checks computed on every scenario: signs that an evaluation should not be trusted.

Each check returns passed, failed (naming the cells that tripped it) or skipped (the scenario has no cells it
needs; `checks: {large_eps: true, double_steps: true}` adds some). Sources: Carlini et al. 2019's checklist,
AutoAttack's flags, Pintor et al.'s indicators of attack failure (see ../shared/reference/evaluation.md).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd
import torch

from bridge.attacks.catalogue import ITERATIVE
from bridge.models.shared import SharedModel
from bridge.studies.evasion.analysis import Outcome

# Attacks whose three translations are the same algorithm when no randomness is involved (tests/test_parity.py).
DETERMINISTIC_PARITY = {("fgsm", "linf"), ("bim", "linf"), ("pgd", "linf")}
PARITY_TOL = 1e-6
# The same spec's robust accuracy in two toolkits further apart than this (or one sample, if more) is named.
AGREE_TOL = 0.05
# The losses of the catalogue's gradient attacks (ce: FGSM, PGD, APGD; margin: C&W, EAD; dlr: APGD-T), whose input
# gradients the gradient check probes.
GRADIENT_LOSSES = ("ce", "margin", "dlr")
# A gradient vanishes where ||grad||_1 x input range < VANISHING: to first order, no perturbation inside the input box
# moves the loss by more, below float32's resolution (1.2e-7) of a loss of order one. Exact zeros included; the
# criterion does not depend on the input's units.
VANISHING = 1e-8
VANISHING_SHARE = 0.05  # the share of correctly classified samples with such a gradient that fails the check
DETECTOR_MAX_FPR = 0.5  # a detector flagging this share of clean inputs or more is degenerate


@dataclass
class Check:
    name: str
    question: str
    status: str = "passed"  # passed | failed | skipped
    cells: str = ""
    detail: str = ""

    def trip(self, cells: list[str], detail: str) -> Check:
        self.status, self.cells, self.detail = "failed", "; ".join(cells), detail
        return self

    def skip(self, why: str) -> Check:
        self.status, self.detail = "skipped", why
        return self


CHECK_COLUMNS = ["name", "question", "status", "cells", "detail", "model"]


def checks_per_model(table: pd.DataFrame, by: str, checks: Callable[[pd.DataFrame], list[Check]]) -> pd.DataFrame:
    """A study kind's checks on its table: `checks` of each group of rows with the same `by` (the model the
    checks judge), one row per check with that model in `model`."""
    frames = [pd.DataFrame([vars(c) for c in checks(rows)]).assign(model=model)
              for model, rows in table.groupby(by, sort=False)]  # fmt: skip
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=CHECK_COLUMNS)


def _tol(outcomes: list[Outcome]) -> float:
    """One sample's worth of accuracy: random starts may move a result by that much."""
    n = max((len(o.per_sample) for o in outcomes if o.per_sample is not None), default=1)
    return 1.0 / n + 1e-9


def _acc(o: Outcome) -> float:
    return float(o.row["robust_accuracy"])


def _same_except(o: Outcome, fields: set[str]) -> tuple:
    """A key of everything that defines a cell except `fields` (and the seed)."""
    params = o.spec.model_dump(exclude=fields | {"seed"})
    params["options"] = repr(sorted(params["options"].items()))
    return (o.row["model"], *sorted(params.items()))


def monotone_in_eps(ok: list[Outcome], tol: float) -> Check:
    check = Check("monotone_in_eps", "robust accuracy non-increasing in eps for each (toolkit, attack)")
    groups: dict[tuple, list[Outcome]] = {}
    for o in ok:
        if o.spec.kind == "fixed":
            groups.setdefault(_same_except(o, {"eps", "step_size"}), []).append(o)
    tripped = []
    for cells in groups.values():
        cells.sort(key=lambda o: o.spec.eps)
        tripped += [b.spec.label for a, b in zip(cells, cells[1:], strict=False) if _acc(b) > _acc(a) + tol]
    if not any(len(c) > 1 for c in groups.values()):
        return check.skip("no attack was run at two or more eps")
    return check.trip(tripped, "a larger budget left more samples robust") if tripped else check


def iterative_beats_fgsm(ok: list[Outcome], tol: float) -> Check:
    check = Check("iterative_not_weaker_than_fgsm", "an iterative attack is not weaker than FGSM at the same eps")
    fgsm = {(o.row["model"], o.spec.toolkit, o.spec.norm, o.spec.eps, o.spec.targeted): o
            for o in ok if o.spec.attack == "fgsm"}  # fmt: skip
    pairs = [(o, fgsm.get((o.row["model"], o.spec.toolkit, o.spec.norm, o.spec.eps, o.spec.targeted)))
             for o in ok if o.spec.attack in ITERATIVE]  # fmt: skip
    pairs = [(o, f) for o, f in pairs if f is not None]
    if not pairs:
        return check.skip("no iterative attack shares a toolkit, norm and eps with an fgsm cell")
    tripped = [f"{o.spec.label} ({_acc(o):.3f} > fgsm {_acc(f):.3f})" for o, f in pairs if _acc(o) > _acc(f) + tol]
    return check.trip(tripped, "fgsm broke more samples than an iterative attack") if tripped else check


def more_steps_not_weaker(ok: list[Outcome], tol: float) -> Check:
    check = Check("more_steps_not_weaker", "more iterations do not leave more samples robust")
    groups: dict[tuple, list[Outcome]] = {}
    for o in ok:
        if o.spec.steps is not None:
            groups.setdefault(_same_except(o, {"steps", "step_size"}), []).append(o)
    compared = [c for c in groups.values() if len({o.spec.steps for o in c}) > 1]
    if not compared:
        return check.skip("no attack was run with two step counts (checks.double_steps adds such cells)")
    tripped = []
    for cells in compared:
        cells.sort(key=lambda o: o.spec.steps)
        tripped += [b.spec.label + f" steps={b.spec.steps}" for a, b in zip(cells, cells[1:], strict=False)
                    if _acc(b) > _acc(a) + tol]  # fmt: skip
    return check.trip(tripped, "more steps left more samples robust") if tripped else check


def _below_best(
    challengers: list[Outcome], rivals_of: Callable[[Outcome], list[Outcome]], tol: float, labels: tuple[str, str]
) -> tuple[list[str], bool]:
    """Challengers left with lower robust accuracy than the best of their rivals (beyond `tol`), and whether any
    challenger had rivals to compare with. `labels`: how a challenger and the rivals are named in the result."""
    tripped, compared = [], False
    for c in challengers:
        rivals = rivals_of(c)
        if not rivals:
            continue
        compared = True
        best = min(_acc(r) for r in rivals)
        if _acc(c) < best - tol:
            tripped.append(f"{c.spec.label}{labels[0]} ({_acc(c):.3f} < best {labels[1]} {best:.3f})")
    return tripped, compared


def blackbox_not_stronger(ok: list[Outcome], tol: float) -> Check:
    check = Check("white_box_beats_score_based", "no score-based attack (square) beats every white-box attack")
    tripped, compared = _below_best(
        [o for o in ok if o.spec.access == "score"],
        lambda o: [w for w in ok if w.spec.access == "gradient" and w.spec.kind == "fixed" and w.row["model"] ==
                   o.row["model"] and w.spec.norm == o.spec.norm and w.spec.eps == o.spec.eps],
        tol, ("", "white-box"),
    )  # fmt: skip
    if not compared:
        return check.skip("no score-based cell shares a norm and eps with a white-box cell")
    message = "gradient masking: a black-box attack found more than the gradients did"
    return check.trip(tripped, message) if tripped else check


def direct_beats_transfer(ok: list[Outcome], transferred: list[Outcome], tol: float) -> Check:
    """A model must fall at least as far under direct attack as under examples transferred from another model (its
    undefended version, or another model of the study); the reverse means its gradients mislead the attacks (for
    a preprocessing defence: use gradient bpda or eot)."""
    check = Check("direct_beats_transfer", "no transferred example set beats every direct attack on the model")
    tripped, compared = _below_best(
        [t for t in transferred if t.spec.kind == "fixed"],
        lambda t: [o for o in ok if o.spec.kind == "fixed" and o.spec.norm == t.spec.norm and o.spec.eps == t.spec.eps],
        tol, (" transferred", "direct"),
    )  # fmt: skip
    if not compared:
        return check.skip("no transferred cell (transfer: defences or models) shares a norm and eps")
    message = "gradient masking: examples made on another model beat the direct attacks on this one"
    return check.trip(tripped, message) if tripped else check


def large_eps_reaches_chance(ok: list[Outcome], tol: float, n_classes: int, width: float) -> Check:
    check = Check("large_eps_reaches_chance", "at a very large eps robust accuracy falls to chance or below")
    large = [o for o in ok if o.spec.kind == "fixed" and o.spec.norm == "linf" and o.spec.eps >= width / 2]
    if not large:
        return check.skip("no linf cell with eps >= half the input range (checks.large_eps adds one)")
    chance = 1.0 / n_classes
    tripped = [f"{o.spec.label} ({_acc(o):.3f})" for o in large if _acc(o) > chance + tol]
    return (
        check.trip(tripped, f"accuracy stays above chance ({chance:.3f}) under an unbounded attack")
        if tripped
        else check
    )


def no_budget_violations(ok: list[Outcome]) -> Check:
    check = Check("no_budget_violations", "every adversarial example is within eps and the input bounds")
    tripped = [f"{o.spec.label} ({int(o.row['budget_violations'])})" for o in ok if o.row["budget_violations"] > 0]
    return check.trip(tripped, "samples outside the budget or the bounds") if tripped else check


def deterministic_agree(ok: list[Outcome]) -> Check:
    check = Check("deterministic_attacks_agree", f"deterministic attacks agree across toolkits within {PARITY_TOL}")
    groups: dict[tuple, list[Outcome]] = {}
    for o in ok:
        deterministic = not o.spec.random_start and (o.spec.attack, o.spec.norm) in DETERMINISTIC_PARITY
        if deterministic and o.x_adv is not None and not o.spec.options:
            groups.setdefault(_same_except(o, {"toolkit", "batch_size"}), []).append(o)
    compared = [c for c in groups.values() if len(c) > 1]
    if not compared:
        return check.skip("no deterministic attack (fgsm, bim, pgd-linf without random start) ran in two toolkits")
    tripped = []
    for cells in compared:
        ref = cells[0]
        for other in cells[1:]:
            diff = float((other.x_adv - ref.x_adv).abs().max())
            if diff > PARITY_TOL:
                tripped.append(f"{other.spec.label} vs {ref.spec.toolkit} (max |diff| {diff:.2e})")
    return check.trip(tripped, "the same deterministic attack gave different examples") if tripped else check


def toolkits_agree(ok: list[Outcome], tol: float) -> Check:
    """The same spec run in several toolkits should leave about as many samples robust; a gap names a translation
    that is weaker (or differs in meaning: see its notes) and understates the attack."""
    check = Check("toolkits_agree", f"the toolkits running one spec agree on robust accuracy within {AGREE_TOL:.0%}")
    groups: dict[tuple, list[Outcome]] = {}
    for o in ok:
        if not math.isnan(_acc(o)):
            groups.setdefault(_same_except(o, {"toolkit", "batch_size"}), []).append(o)
    compared = [c for c in groups.values() if len({o.spec.toolkit for o in c}) > 1]
    if not compared:
        return check.skip("no spec ran in two or more toolkits")
    limit = max(AGREE_TOL, tol)
    apart = [c for c in compared if max(map(_acc, c)) - min(map(_acc, c)) > limit]
    if not apart:
        return check
    tripped = [f"{c[0].spec.label.rpartition(' | ')[0]}: " + ", ".join(f"{o.spec.toolkit} {_acc(o):.3f}" for o in c)
               for c in apart]  # fmt: skip
    # the notes recorded with each cell (not today's adapter table): the check is recomputable from the store
    notes = {f"{o.spec.attack}-{o.spec.norm} | {o.spec.toolkit}": o.notes for c in apart for o in c}
    message = f"toolkits differ by more than {limit:.3f} in robust accuracy on one spec; the weaker understates it"
    return check.trip(tripped, message + "".join(f"; [{k}] {n}" for k, n in notes.items() if n))


def detector_not_degenerate(rows: list[dict]) -> Check:
    """A detector that flags half the clean inputs or more, or adversarial inputs no more often than clean ones
    (chance), detects nothing, whatever its detection rate."""
    check = Check("detector_not_degenerate", "the detector flags adversarial inputs more often than clean ones, and "
                  f"fewer than {DETECTOR_MAX_FPR:.0%} of clean inputs")  # fmt: skip
    if not rows:
        return check.skip("no detector ran (the scenario's `detector:` adds one)")
    tripped = [
        f"{r['toolkit']} examples, trained on {r['trained_on']}: detection rate {r['detection_rate']:.3f} at false "
        f"positive rate {r['false_positive_rate']:.3f}"
        for r in rows
        if r["false_positive_rate"] >= DETECTOR_MAX_FPR or r["detection_rate"] <= r["false_positive_rate"]
    ]
    message = f"a degenerate detector: false positive rate >= {DETECTOR_MAX_FPR} or detection no better than chance"
    return check.trip(tripped, message) if tripped else check


def _loss_gradients(model: SharedModel, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
    """Input gradient of each probed attack loss (DLR needs three classes), PyTorch and Keras models alike."""
    return {loss: model.loss_gradient(x, y, loss) for loss in GRADIENT_LOSSES if loss != "dlr" or model.n_classes > 2}


def gradients_available(model: SharedModel, x: torch.Tensor, y: torch.Tensor, clean_pred: torch.Tensor) -> Check:
    """Attacks are blind where the input gradient of the loss they optimise vanishes: saturated logits zero the
    cross-entropy's while the margin's stays, a quantising layer zeroes every loss's. Probed per loss (every one in
    GRADIENT_LOSSES, whichever the cells use: the victim task runs before them) on up to 256 correct samples."""
    check = Check("gradients_not_vanishing", f"the input gradients of the attack losses ({', '.join(GRADIENT_LOSSES)})"
                  " do not vanish on correctly classified samples")  # fmt: skip
    correct = clean_pred == y
    if not correct.any():
        return check.skip("no correctly classified sample")
    x, y = x[correct][:256], y[correct][:256]
    width = model.bounds[1] - model.bounds[0]
    shares = {
        loss: float((grad.flatten(1).abs().sum(1) * width < VANISHING).float().mean())
        for loss, grad in _loss_gradients(model, x, y).items()
    }
    tripped = [loss for loss, share in shares.items() if share > VANISHING_SHARE]
    if tripped:
        blind = f": attacks on the {', '.join(tripped)} loss are blind (saturated logits or masked gradients)"
        return check.trip(["(model)"], _vanishing_detail(shares, len(y)) + blind)
    check.detail = _vanishing_detail(shares, len(y))
    return check


def _vanishing_detail(shares: dict[str, float], n: int) -> str:
    """Per probed loss, the share of the n samples whose gradient vanishes; the losses not probed (dlr needs 3
    classes)."""
    missing = [loss for loss in GRADIENT_LOSSES if loss not in shares]
    return (
        ", ".join(f"{loss}: {share:.0%}" for loss, share in shares.items())
        + f" of {n} correctly classified samples have a zero or vanishing input gradient"
        + f" (||grad||_1 x input range < {VANISHING:g})"
        + (f"; not probed: {', '.join(missing)}" if missing else "")
    )


def deterministic_outputs(model: SharedModel, x: torch.Tensor) -> Check:
    check = Check("deterministic_outputs", "two forward passes on the same inputs give the same outputs")
    a, b = model.predict(x[:256]), model.predict(x[:256])
    diff = float((a - b).abs().max())
    if diff > 1e-5:
        return check.trip(["(model)"], f"randomised outputs (max |diff| {diff:.2e}): attacks need EOT")
    return check


def model_checks(model: SharedModel, x: torch.Tensor, y: torch.Tensor, clean_pred: torch.Tensor) -> list[Check]:
    """The checks that query the model itself (the study's `victim` task computes them where the model is)."""
    return [gradients_available(model, x, y, clean_pred), deterministic_outputs(model, x)]


def run_checks(
    outcomes: list[Outcome],
    probes: list[Check],
    n_classes: int,
    width: float,
    transferred: list[Outcome] = (),
    detector: list[dict] = (),
) -> pd.DataFrame:
    """Every check on one model, as a table: check, question, status, cells, detail. `probes`: its `model_checks`;
    `width`: the input range; `transferred`: its transfer rows; `detector`: its detector table's rows."""
    ok = [o for o in outcomes if o.ok]
    tol = _tol(ok)
    checks = [
        monotone_in_eps(ok, tol),
        iterative_beats_fgsm(ok, tol),
        more_steps_not_weaker(ok, tol),
        blackbox_not_stronger(ok, tol),
        direct_beats_transfer(ok, list(transferred), tol),
        *probes,
        large_eps_reaches_chance(ok, tol, n_classes, width),
        no_budget_violations(ok),
        deterministic_agree(ok),
        toolkits_agree(ok, tol),
        detector_not_degenerate(list(detector)),
    ]
    return pd.DataFrame([vars(c) for c in checks])


def summary_line(table: pd.DataFrame) -> str:
    counts = table["status"].value_counts()
    failed = table[table["status"] == "failed"]
    head = f"sanity checks: {counts.get('passed', 0)} passed, {counts.get('failed', 0)} failed"
    head += f", {counts.get('skipped', 0)} skipped"
    models = "model" in table and table["model"].nunique() > 1
    return head + "".join(
        f"\n  FAILED {r.name}{f' ({r.model})' if models else ''}: {r.detail} [{r.cells}]" for r in failed.itertuples()
    )
