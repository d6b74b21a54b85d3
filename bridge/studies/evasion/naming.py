"""Names of cells that no table or run list can confuse.

Two cells of one attack, norm, eps and toolkit (PGD with and without random start, the `double_steps` cells) used
to share a name and a row of the summary, so one of them vanished. A cell's `variant` names the spec fields in
which it differs from the other cells of its group ('' when it is alone), and its run name leads with what
distinguishes cells: toolkit, attack and budget, variant, victim.
"""

from __future__ import annotations

from bridge.attacks.spec import AttackSpec

# What makes two cells the same row of a summary: everything else that differs is their variant.
ROW_FIELDS = ("attack", "native", "norm", "eps", "targeted", "toolkit")
QUIET_FIELDS = {"batch_size"}  # never the difference a reader needs (it does not change what the attack does)


def _text(value: object) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_text(v)}" for k, v in sorted(value.items())) + "}"
    return f"{value:g}" if isinstance(value, float) else str(value).lower() if isinstance(value, bool) else str(value)


def variants(specs: list[AttackSpec]) -> list[str]:
    """For each spec: `field=value` for every field in which it differs from another spec of its row ('' when the
    row has one distinct spec). Repeated specs (one cell on several victims) get the same variant."""
    dumps = [s.model_dump(exclude=QUIET_FIELDS) for s in specs]
    rows: dict[tuple, dict[str, dict]] = {}
    for dump in dumps:
        rows.setdefault(tuple(_text(dump[f]) for f in ROW_FIELDS), {})[_text(dump)] = dump
    differing = {
        row: [f for f in next(iter(members.values())) if f not in ROW_FIELDS
              and len({_text(m[f]) for m in members.values()}) > 1]
        for row, members in rows.items()
    }  # fmt: skip
    return [", ".join(f"{f}={_text(d[f])}" for f in differing[tuple(_text(d[f]) for f in ROW_FIELDS)]) for d in dumps]


def cell_name(spec: AttackSpec, variant: str, victim: str | None = None) -> str:
    """`torchattacks · pgd-linf eps=0.1 · random_start=true · small_cnn/jpeg`: the toolkit first (a run list cut
    short still tells cells apart), the victim last and only when the study has several."""
    name = f"native:{spec.native}" if spec.native else spec.attack
    eps = "" if spec.eps is None else f" eps={spec.eps:g}"
    targeted = "" if spec.targeted == "none" else f" targeted={spec.targeted}"
    parts = [spec.toolkit, f"{name}-{spec.norm}{eps}{targeted}", variant, victim or ""]
    return " · ".join(p for p in parts if p)
