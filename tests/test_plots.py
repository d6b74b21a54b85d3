"""The report's plots, drawn from small realistic tables and checked for what a reader needs: toolkits told apart
(identical ones visibly identical), direct and transfer rows never joined, the trade-off zoomed to its data with
labels that do not collide and flagged defences marked.

`ADVBRIDGE_WRITE_DOCS_IMG=1 pytest tests/test_plots.py` also writes the figures the README shows to docs/img/.
"""

from __future__ import annotations

import os
from itertools import combinations
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.text import Annotation, Text

from bridge.report import plots

DOCS_IMG = Path(__file__).resolve().parents[1] / "docs" / "img"
EPS = [0.05, 0.1, 0.2]
DEFENCES = {  # defence: (clean accuracy, worst case at linf 0.1, at linf 0.2, at l2 1.0)
    "none": (0.983, 0.05, 0.0, 0.21),
    "squeeze-3bit": (0.978, 0.06, 0.0, 0.23),
    "squeeze-exact": (0.978, 0.86, 0.71, 0.88),
    "jpeg-50": (0.972, 0.09, 0.01, 0.27),
    "smoothing-3": (0.972, 0.09, 0.01, 0.25),
    "pgd_at": (0.971, 0.62, 0.18, 0.55),
    "label_smoothing-0.1": (0.989, 0.07, 0.0, 0.22),
}
FLAGGED = {"small_cnn/squeeze-exact"}


def comparison_rows() -> pd.DataFrame:
    """pgd linf on a JPEG-defended model: art and foolbox identical (deterministic PGD), torchattacks a little
    weaker; the transferred examples weaker still; a second art cell at eps 0.1 (the checks' 40 steps)."""
    direct = {"art": [0.41, 0.09, 0.0], "foolbox": [0.41, 0.09, 0.0], "torchattacks": [0.43, 0.12, 0.01]}
    transfer = {"art": [0.72, 0.45, 0.21], "foolbox": [0.72, 0.45, 0.21], "torchattacks": [0.74, 0.47, 0.22]}
    rows = [
        {"toolkit": t, "eps": e, "robust_accuracy": a, "evaluation": evaluation, "variant": ""}
        for evaluation, table in (("direct", direct), ("transfer", transfer))
        for t, accs in table.items()
        for e, a in zip(EPS, accs, strict=True)
    ]
    rows.append({"toolkit": "art", "eps": 0.1, "robust_accuracy": 0.11, "evaluation": "direct", "variant": "steps=40"})
    frame = pd.DataFrame(rows).sample(frac=1.0, random_state=0)  # the table's order is not eps order
    return frame.assign(model="small_cnn/jpeg-50", defence="jpeg-50", attack="pgd", norm="linf", targeted="none",
                        clean_accuracy=0.972)  # fmt: skip


def tradeoff_rows() -> pd.DataFrame:
    """The trade-off table of seven defences of one model, clean accuracies within 0.02 of each other."""
    rows = [
        {"model": "small_cnn" if d == "none" else f"small_cnn/{d}", "base_model": "small_cnn", "defence": d,
         "clean_accuracy": clean, "norm": norm, "eps": eps, "robust_accuracy_worst_case": worst}
        for d, (clean, *worsts) in DEFENCES.items()
        for (norm, eps), worst in zip((("linf", 0.1), ("linf", 0.2), ("l2", 1.0)), worsts, strict=True)
    ]  # fmt: skip
    return pd.DataFrame(rows)


def worst_case_rows() -> pd.DataFrame:
    """`worst_case_by_eps` for four models and two norms; two models identical at every eps."""
    worst = {"none": [0.4, 0.05, 0.0], "squeeze-3bit": [0.4, 0.05, 0.0], "pgd_at": [0.85, 0.62, 0.18],
             "squeeze-exact": [0.93, 0.86, 0.71]}  # fmt: skip
    rows = [
        {"model": "small_cnn" if d == "none" else f"small_cnn/{d}", "norm": norm, "eps": e * scale,
         "robust_accuracy_worst_case": a if norm == "linf" else max(0.0, a - 0.03)}
        for norm, scale in (("linf", 1.0), ("l2", 10.0))
        for d, accs in worst.items()
        for e, a in zip(EPS, accs, strict=True)
    ]  # fmt: skip
    return pd.DataFrame(rows)


def security_rows() -> pd.DataFrame:
    """Security curves of one minimum-norm attack: foolbox and torchattacks identical, art a little stronger."""
    grid = np.linspace(0, 2.5, 101)
    curve = np.clip(1.0 - grid / 2.0, 0, 1).round(2)
    frames = [pd.DataFrame({"toolkit": t, "eps": grid, "robust_accuracy": (curve - shift).clip(0, 1)})
              for t, shift in (("art", 0.04), ("foolbox", 0.0), ("torchattacks", 0.0))]  # fmt: skip
    return pd.concat(frames, ignore_index=True)


@pytest.fixture(scope="module")
def docs_img() -> Path | None:
    """docs/img/ when ADVBRIDGE_WRITE_DOCS_IMG=1 (the figures the README shows), else None."""
    if os.environ.get("ADVBRIDGE_WRITE_DOCS_IMG") != "1":
        return None
    DOCS_IMG.mkdir(parents=True, exist_ok=True)
    return DOCS_IMG


def keep(fig: Figure, name: str, docs_img: Path | None) -> None:
    """Render the figure as MLflow stores it (a PNG), and write it to docs/img/ when asked."""
    data = plots.png(fig)
    assert data.startswith(b"\x89PNG")
    if docs_img is not None:
        (docs_img / f"{name}.png").write_bytes(data)


def data_lines(ax) -> list[Line2D]:
    return [line for line in ax.get_lines() if len(line.get_xdata())]


def legend_texts(ax) -> list[str]:
    legend = ax.get_legend()
    return [t.get_text() for t in legend.get_texts()] if legend else []


def test_robustness_curve_keeps_direct_and_transfer_apart_and_toolkits_visible(docs_img: Path | None) -> None:
    fig = plots.robustness_curve(comparison_rows(), "pgd linf (small_cnn/jpeg-50)")
    direct, transfer = fig.axes
    assert direct.get_title() == "direct attack" and transfer.get_title().startswith("transfer")
    for ax, top in ((direct, 0.43), (transfer, 0.74)):
        joined = [line for line in data_lines(ax) if line.get_linestyle() != "None"]
        assert len(joined) == 3  # one line per toolkit
        for line in joined:  # from clean accuracy at eps 0, eps increasing: no zig-zag
            x, y = np.asarray(line.get_xdata(), float), np.asarray(line.get_ydata(), float)
            assert x[0] == 0 and y[0] == 0.972 and (np.diff(x) > 0).all() and y[1] <= top
        assert len({line.get_marker() for line in joined}) == 3
        assert len({str(line.get_linestyle()) for line in joined}) == 3
        assert len({line.get_color() for line in joined}) == 3
        assert "foolbox (identical to art)" in legend_texts(ax) and "torchattacks" in legend_texts(ax)
        assert ax.get_ylim()[0] <= 0 and ax.get_ylim()[1] >= 1
    # The extra art cell at eps 0.1 is a bare marker; the line follows the stronger cell.
    art = next(line for line in data_lines(direct) if line.get_label() == "art")
    assert list(art.get_ydata()) == [0.972, 0.41, 0.09, 0.0]
    extra = [line for line in data_lines(direct) if line.get_linestyle() == "None"]
    assert len(extra) == 1 and list(extra[0].get_ydata()) == [0.11]
    assert "art: weaker cells at the same eps (steps=40)" in legend_texts(direct)
    assert not [line for line in data_lines(transfer) if line.get_linestyle() == "None"]
    keep(fig, "robust_accuracy_vs_eps", docs_img)


def test_robustness_curve_without_transfer_rows_is_one_panel() -> None:
    rows = comparison_rows()
    fig = plots.robustness_curve(rows[rows["evaluation"] == "direct"], "pgd linf")
    assert len(fig.axes) == 1 and fig.axes[0].get_title() == "direct attack"
    plots.png(fig)


def test_unknown_toolkits_get_their_own_style() -> None:
    styles = plots.toolkit_styles(["art", "zeta", "alpha", "foolbox", "torchattacks"])
    assert len({(s["marker"], str(s["linestyle"]), s["color"]) for s in styles.values()}) == 5
    assert styles["alpha"]["marker"] != styles["zeta"]["marker"]


def test_identical_curves_are_named_after_the_first() -> None:
    x = np.array([0.0, 0.1])
    same = plots.identical_to({"a": (x, x), "b": (x, x.copy()), "c": (x, x + 0.1), "d": (x, x)})
    assert same == {"b": "a", "d": "a"}


def boxes(fig: Figure, ax) -> list:
    renderer = fig.canvas.get_renderer()
    return [Text.get_window_extent(t, renderer) for t in ax.texts if isinstance(t, Annotation)]


def test_tradeoff_is_zoomed_with_labels_apart_and_flagged_defences_marked(docs_img: Path | None) -> None:
    table = tradeoff_rows()
    fig = plots.tradeoff(table, flagged=FLAGGED)
    fig.canvas.draw()
    panels = [ax for ax in fig.axes if ax.axison]
    assert [ax.get_title() for ax in panels] == ["l2 eps=1", "linf eps=0.1", "linf eps=0.2"]
    for ax in panels:
        rows = table[(table["norm"] + " eps=" + table["eps"].map("{:g}".format)) == ax.get_title()]
        (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
        clean, worst = rows["clean_accuracy"], rows["robust_accuracy_worst_case"]
        assert x0 < clean.min() and clean.max() < x1 and x1 - x0 < 0.1  # zoomed to 0.971..0.989, not 0..1
        assert y0 < worst.min() and worst.max() < y1 and y1 - y0 < 1.3 * (worst.max() - worst.min()) + 0.1
        labels = boxes(fig, ax)
        assert sorted(t.get_text() for t in ax.texts) == sorted(DEFENCES)
        frame = ax.get_window_extent(fig.canvas.get_renderer())
        for a, b in combinations(labels, 2):
            assert not a.overlaps(b), (ax.get_title(), a, b)
        centres = ax.transData.transform(rows[["clean_accuracy", "robust_accuracy_worst_case"]].to_numpy(float))
        for box in labels:  # inside the axes (nothing clipped), over no marker
            assert frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1
            assert not box.count_contains(centres)
        markers = {c.get_paths()[0].vertices.shape for c in ax.collections if len(c.get_offsets())}
        assert len(markers) == 2  # circles and the flagged cross
        squeezed = rows[rows["defence"] == "squeeze-exact"].iloc[0]
        (cross,) = [c for c in ax.collections if len(c.get_offsets()) == 1]  # the flagged model alone
        assert tuple(cross.get_offsets()[0]) == (squeezed["clean_accuracy"], squeezed["robust_accuracy_worst_case"])
    assert [t for ax in fig.axes for t in legend_texts(ax)] == [plots.FLAG_NOTE]  # one model: no colour legend
    keep(fig, "tradeoff", docs_img)


def test_tradeoff_without_flags_has_no_legend_and_tolerates_a_missing_worst_case() -> None:
    fig = plots.tradeoff(tradeoff_rows())
    assert not [ax for ax in fig.axes if ax.get_legend()]
    plots.png(fig)
    info = tradeoff_rows()[["model", "base_model", "defence", "clean_accuracy"]].drop_duplicates()
    plots.png(plots.tradeoff(info))  # no fixed-budget cell ran: tradeoff_table has no worst case


def test_worst_case_curve_has_one_panel_per_norm_and_one_line_per_model(docs_img: Path | None) -> None:
    by_eps = worst_case_rows()
    clean = {m: 0.98 for m in by_eps["model"]}
    fig = plots.worst_case_curve(by_eps, "small_cnn: worst case over every attack and toolkit", clean, FLAGGED)
    panels = fig.axes
    assert [ax.get_title() for ax in panels] == ["l2", "linf"]
    for ax in panels:
        lines = data_lines(ax)
        assert len(lines) == 4 and all(line.get_xdata()[0] == 0 and line.get_ydata()[0] == 0.98 for line in lines)
        assert len({line.get_color() for line in lines}) == 4 and len({line.get_marker() for line in lines}) == 4
    labels = legend_texts(panels[-1])
    assert "small_cnn/squeeze-3bit (identical to small_cnn)" in labels
    assert "small_cnn/squeeze-exact [flagged: a sanity check failed]" in labels
    widths = {line.get_label().split(" ")[0]: line.get_linewidth() for line in data_lines(panels[0])}
    assert widths["small_cnn/squeeze-3bit"] < widths["small_cnn"]  # drawn thinner on top: both visible
    keep(fig, "worst_case_vs_eps", docs_img)


def test_security_curve_styles_toolkits_apart(docs_img: Path | None) -> None:
    fig = plots.security_curve(security_rows(), "cw l2 (small_cnn): robust accuracy from distances")
    (ax,) = fig.axes
    lines = data_lines(ax)
    assert len(lines) == 3 and len({line.get_marker() for line in lines}) == 3
    assert "torchattacks (identical to foolbox)" in legend_texts(ax)
    keep(fig, "security_curve", docs_img)


def test_transfer_matrix_marks_the_diagonal_identical_panels_and_pairs_not_run(docs_img: Path | None) -> None:
    models = ["small_cnn", "lenet", "resnet18"]
    grid = [[0.05, 0.62, 0.48], [0.55, 0.08, 0.51], [0.44, 0.58, 0.02]]  # source row, target column
    accuracy = {(s, t): grid[i][j] for i, s in enumerate(models) for j, t in enumerate(models)}
    rows = [{"source": s, "target": t, "toolkit": k, "robust_accuracy": a + (0.03 if k == "torchattacks" else 0)}
            for k in ("art", "foolbox", "torchattacks") for (s, t), a in accuracy.items()
            if (k, s, t) != ("torchattacks", "lenet", "resnet18")]  # fmt: skip
    fig = plots.transfer_matrix(pd.DataFrame(rows), "pgd linf eps=0.1: transfer across models", models)
    panels = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title() for ax in panels] == ["art", "foolbox (identical to art)", "torchattacks"]
    for ax in panels:
        assert [t.get_text() for t in ax.get_yticklabels()] == models  # rows: the source; columns: the target
        cells = {(round(t.get_position()[1]), round(t.get_position()[0])): t for t in ax.texts}
        assert all(cells[i, i].get_fontweight() == "bold" for i in range(3))  # the direct attack
        assert cells[0, 1].get_fontweight() == "normal"
    torchattacks = {(round(t.get_position()[1]), round(t.get_position()[0])): t.get_text() for t in panels[2].texts}
    assert torchattacks[1, 2] == "not run" and torchattacks[0, 1] == "0.65"
    keep(fig, "transfer_matrix", docs_img)
