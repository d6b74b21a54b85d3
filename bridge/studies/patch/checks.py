"""The patch study's sanity checks, on its table alone: signs that a patch should not be trusted. Both look at each
patch on its own (undefended) model, where a working patch must show its effect."""

from __future__ import annotations

import pandas as pd

from bridge.studies.evasion.checks import Check, checks_per_model


def _curves(rows: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """Each patch's ok rows on its own model, by toolkit, sorted by scale."""
    ok = rows[(rows["status"] == "ok") & (rows["evaluation"] == "direct")]
    return [(str(toolkit), mine.sort_values("scale")) for toolkit, mine in ok.groupby("toolkit", sort=False)]


def tolerance(trials: float) -> float:
    """One trial's worth of success: the draws are the same for every scale and patch, so a smaller gap is noise."""
    return 1.0 / max(float(trials), 1.0) + 1e-9


def grows_with_scale(rows: pd.DataFrame) -> Check:
    """A larger patch covers more of the image and must succeed more: success at the largest scale not above that at
    the smallest (beyond one trial's worth) means the patch or its application is broken."""
    check = Check("patch_success_grows_with_scale", "on its own model, each patch succeeds more at the largest scale "
                  "than at the smallest")  # fmt: skip
    curves = [(t, c) for t, c in _curves(rows) if c["scale"].nunique() > 1]
    if not curves:
        return check.skip("no patch was judged at two scales on its own model")
    tripped = []
    for toolkit, curve in curves:
        small, large = curve.iloc[0], curve.iloc[-1]
        if large["success"] <= small["success"] + tolerance(large["n_trials"]):
            tripped.append(f"{toolkit} ({small['success']:.3f} at {small['scale']:g}, {large['success']:.3f} at "
                           f"{large['scale']:g})")  # fmt: skip
    if tripped:
        return check.trip(tripped, "success does not grow with the patch's scale")
    check.detail = "; ".join(f"{t}: {c['success'].iloc[0]:.3f} → {c['success'].iloc[-1]:.3f}" for t, c in curves)
    return check


def beats_noise(rows: pd.DataFrame) -> Check:
    """At the largest scale the patch must beat a random-noise patch of its shape placed identically: what it does
    beyond hiding part of the image is its content's doing."""
    check = Check("patch_beats_noise", "on its own model at the largest scale, each patch succeeds more than a "
                  "random-noise patch of the same shape and placements")  # fmt: skip
    curves = _curves(rows)
    if not curves:
        return check.skip("no patch was judged on its own model")
    tripped = []
    for toolkit, curve in curves:
        top = curve.iloc[-1]
        if top["success"] <= top["control_success"] + tolerance(top["n_trials"]):
            tripped.append(f"{toolkit} ({top['success']:.3f} vs noise {top['control_success']:.3f} at "
                           f"{top['scale']:g})")  # fmt: skip
    if tripped:
        return check.trip(tripped, "the patch does no better than noise of its shape")
    check.detail = "; ".join(f"{t}: {c['success'].iloc[-1]:.3f} vs noise {c['control_success'].iloc[-1]:.3f}"
                             for t, c in curves)  # fmt: skip
    return check


def run_checks(table: pd.DataFrame) -> pd.DataFrame:
    """Every check per source model: name, question, status, cells, detail, model."""
    return checks_per_model(table, "source", lambda rows: [grows_with_scale(rows), beats_noise(rows)])
