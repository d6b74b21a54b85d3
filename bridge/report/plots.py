"""Figures logged to MLflow: a sample grid per cell, robust accuracy vs eps per attack, security curves, the worst
case over attacks per threat model, the defence trade-off. Toolkits keep one style everywhere."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

from collections.abc import Collection, Iterable, Mapping  # noqa: E402
from typing import Any  # noqa: E402

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.text import Annotation  # noqa: E402

_HOLLOW = {"markerfacecolor": "none", "markeredgewidth": 1.6}  # hollow markers show smaller ones inside them
_TOOLKIT_STYLES = {
    "art": {"color": "C0", "marker": "o", "linestyle": "-", "linewidth": 3.4, "markersize": 10, **_HOLLOW},
    "foolbox": {"color": "C1", "marker": "s", "linestyle": "--", "linewidth": 2.2, "markersize": 6.5, **_HOLLOW},
    "torchattacks": {"color": "C2", "marker": "^", "linestyle": ":", "linewidth": 1.6, "markersize": 4.5},
}
# Toolkits outside the table, in name order: each takes the next of these.
_EXTRA_STYLES = [
    {"color": "C3", "marker": "D", "linestyle": "-.", "linewidth": 1.8, "markersize": 5.5, **_HOLLOW},
    {"color": "C4", "marker": "v", "linestyle": (0, (5, 1, 1, 1)), "linewidth": 1.8, "markersize": 5.5, **_HOLLOW},
    {"color": "C5", "marker": "P", "linestyle": (0, (1, 2)), "linewidth": 1.8, "markersize": 5.5, **_HOLLOW},
]
FLAG_NOTE = "flagged: a sanity check failed"


def toolkit_styles(toolkits: Iterable[str]) -> dict[str, dict[str, Any]]:
    """A fixed colour, marker, line style and size per toolkit (matplotlib keywords). Sizes shrink from art to
    torchattacks, so identical lines stay visible: a thick line under thinner ones, concentric markers."""
    extra = sorted({t for t in toolkits if t not in _TOOLKIT_STYLES})
    styles = _TOOLKIT_STYLES | {t: _EXTRA_STYLES[i % len(_EXTRA_STYLES)] for i, t in enumerate(extra)}
    return {t: dict(styles[t]) for t in toolkits}


def identical_to(curves: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict[str, str]:
    """For each curve equal to an earlier one (same x and y, in the dict's order): the first such curve's name."""
    out: dict[str, str] = {}
    names = list(curves)
    for i, name in enumerate(names):
        x, y = curves[name]
        for earlier in names[:i]:
            ex, ey = curves[earlier]
            if earlier not in out and len(x) == len(ex) and np.allclose(x, ex) and np.allclose(y, ey, atol=1e-9):
                out[name] = earlier
                break
    return out


def _label(name: str, same: dict[str, str]) -> str:
    """A legend entry that says when the curve hides under an earlier one."""
    return f"{name} (identical to {same[name]})" if name in same else name


def _accuracy_axis(ax: Axes) -> None:
    """eps on x, robust accuracy on y over [0, 1] whatever the data."""
    ax.set_xlabel("eps")
    ax.set_ylabel("robust accuracy")
    ax.set_ylim(-0.04, 1.04)
    ax.set_yticks(np.linspace(0, 1, 6))
    ax.grid(alpha=0.3)


def _order(toolkits: Iterable[str]) -> list[str]:
    """Known toolkits in the style table's order, then the others by name."""
    known = [t for t in _TOOLKIT_STYLES if t in set(toolkits)]
    return known + sorted(set(toolkits) - set(known))


def robustness_curve(table: pd.DataFrame, title: str) -> Figure:
    """Robust accuracy vs eps per toolkit, from clean accuracy at eps = 0: one panel for the direct attacks, then
    one per model whose examples were transferred here, never joined into one line.

    Where one toolkit has several cells at one eps (another step count or loss), the line follows the strongest
    and the others are unjoined markers, named by their `variant` where the table has that column."""
    source = table["source"] if "source" in table else pd.Series("another model", index=table.index)
    moved = table["evaluation"] == "transfer"
    panels = [("direct attack", ~moved)] if (~moved).any() else []
    panels += [(f"transfer: examples made on {s}", moved & (source == s)) for s in source[moved].unique()]
    styles = toolkit_styles(_order(table["toolkit"].unique()))
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 5.2), squeeze=False, sharey=True)
    for ax, (name, chosen) in zip(axes[0], panels, strict=True):
        rows = table[chosen]
        curves, extra = {}, {}
        for toolkit in _order(rows["toolkit"].unique()):
            mine = rows[rows["toolkit"] == toolkit].sort_values(["eps", "robust_accuracy"])
            best = mine.drop_duplicates("eps")
            eps = np.concatenate([[0.0], best["eps"].to_numpy(float)])
            acc = np.concatenate([[mine["clean_accuracy"].iloc[0]], best["robust_accuracy"].to_numpy(float)])
            curves[toolkit] = (eps, acc)
            extra[toolkit] = mine.drop(best.index)
        same = identical_to(curves)
        for toolkit, (eps, acc) in curves.items():
            ax.plot(eps, acc, label=_label(toolkit, same), **styles[toolkit])
            others = extra[toolkit]
            if len(others):
                style = styles[toolkit] | {"linestyle": "none", "alpha": 0.6}
                ax.plot(others["eps"], others["robust_accuracy"], label=_weaker_label(toolkit, others), **style)
        _accuracy_axis(ax)
        ax.set_title(name, fontsize=9)
        ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.2))  # below: never over the lines
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def _weaker_label(toolkit: str, others: pd.DataFrame) -> str:
    """Legend entry of a toolkit's cells off its line, with their variants (e.g. `steps=40`) where known."""
    variants = sorted({str(v) for v in others.get("variant", pd.Series(dtype=object)).dropna() if v})
    return f"{toolkit}: weaker cells at the same eps" + (f" ({'; '.join(variants)})" if variants else "")


def security_curve(curves: pd.DataFrame, title: str) -> Figure:
    """Robust accuracy vs eps computed from a minimum-norm attack's per-sample distances, one line per toolkit;
    markers every tenth point, shifted per toolkit, so identical curves show every toolkit's marks."""
    fig, ax = plt.subplots(figsize=(5.2, 3.8))
    toolkits = _order(curves["toolkit"].unique())
    styles = toolkit_styles(toolkits)
    lines = {t: (rows["eps"].to_numpy(float), rows["robust_accuracy"].to_numpy(float))
             for t, rows in ((t, curves[curves["toolkit"] == t]) for t in toolkits)}  # fmt: skip
    same = identical_to(lines)
    for i, (toolkit, (eps, acc)) in enumerate(lines.items()):
        every = max(len(eps) // 10, 1)
        ax.step(
            eps, acc, where="post", label=_label(toolkit, same), markevery=(i * every // 3, every), **styles[toolkit]
        )
    _accuracy_axis(ax)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def worst_case_curve(
    by_eps: pd.DataFrame, title: str, clean: Mapping[str, float] | None = None, flagged: Collection[str] = frozenset()
) -> Figure:
    """The per-sample worst case over every attack and toolkit vs eps (`worst_case_by_eps`), one panel per norm
    (threat model), one line per model (a defended model is `<model>/<defence>`), from its clean accuracy at
    eps = 0 where `clean` gives it; models in `flagged` are named so in the legend (a high line may be masking).
    Identical lines are named as such and drawn thinner, dashed, on top."""
    norms = sorted(by_eps["norm"].unique())
    models = sorted(by_eps["model"].unique())
    colours = {m: f"C{i % 10}" for i, m in enumerate(models)}
    markers = {m: "osD^vP*Xph"[i % 10] for i, m in enumerate(models)}
    fig, axes = plt.subplots(1, len(norms), figsize=(5.2 * len(norms) + 2.2, 4), squeeze=False)
    for ax, norm in zip(axes[0], norms, strict=True):
        rows = by_eps[by_eps["norm"] == norm]
        curves = {}
        for model in models:
            mine = rows[rows["model"] == model].sort_values("eps")
            if len(mine):
                eps, acc = mine["eps"].to_numpy(float), mine["robust_accuracy_worst_case"].to_numpy(float)
                if clean and model in clean:
                    eps, acc = np.r_[0.0, eps], np.r_[clean[model], acc]
                curves[model] = (eps, acc)
        same = identical_to(curves)
        for model, (eps, acc) in curves.items():
            depth = min(_depth(model, same), 3)
            hollow = depth == 0 and model in same.values()
            label = _label(model, same) + (f" [{FLAG_NOTE}]" if model in flagged else "")
            ax.plot(eps, acc, label=label, color=colours[model], marker=markers[model],
                    linestyle=("-", "--", ":", "-.")[depth], linewidth=(4.0, 2.2, 1.5, 1.2)[depth],
                    markersize=(10, 7, 5, 4)[depth], markerfacecolor="none" if hollow else colours[model])  # fmt: skip
        _accuracy_axis(ax)
        ax.set_title(norm, fontsize=9)
    axes[0, -1].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def _depth(name: str, same: dict[str, str]) -> int:
    """How many identical curves are drawn under this one."""
    if name not in same:
        return 0
    group = [n for n, first in same.items() if first == same[name]]
    return group.index(name) + 1


# Label offsets tried around a point, nearest first (points); directions as (dx, dy) signs, sideways first.
_RADII = (8, 14, 24, 36, 50, 66, 84)
_DIRECTIONS = ((1, 0), (-1, 0), (1, 1), (1, -1), (-1, 1), (-1, -1), (0, 1), (0, -1))
_POINT_RADIUS = 6.0  # points: what a label keeps clear around every marker
_HA = {1: "left", -1: "right", 0: "center"}
_VA = {1: "bottom", -1: "top", 0: "center"}
Box = tuple[float, float, float, float]  # x0, y0, x1, y1 in pixels
Spot = tuple[float, int, int]  # a label's distance from its point (points) and side (dx, dy)


def tradeoff(table: pd.DataFrame, flagged: Collection[str] = frozenset()) -> Figure:
    """Clean accuracy (x) vs worst-case robust accuracy (y), one point per defended model, one panel per
    (norm, eps), both axes zoomed to the data; each point labelled with its defence, labels placed so none
    collides. Models in `flagged` (the `model` column, e.g. `small_cnn/squeeze-exact`) are drawn as crosses."""
    needed = ["norm", "eps", "robust_accuracy_worst_case"]
    data = table.reindex(columns=list(dict.fromkeys([*table.columns, *needed]))).dropna(subset=needed)
    threats = data[["norm", "eps"]].drop_duplicates().sort_values(["norm", "eps"])
    ncols = min(max(len(threats), 1), 3)
    nrows = -(-max(len(threats), 1) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.6 * ncols + 2.0, 4.2 * nrows), squeeze=False)
    bases = sorted(data["base_model"].unique())
    colours = {b: f"C{i % 10}" for i, b in enumerate(bases)}
    labelled = []
    for ax, (_, threat) in zip(axes.flat, threats.iterrows(), strict=False):
        rows = data[(data["norm"] == threat["norm"]) & (data["eps"] == threat["eps"])]
        bad = rows["model"].isin(set(flagged)).to_numpy()
        for marker, size, mask in (("o", 45, ~bad), ("X", 110, bad)):
            shown = rows[mask]
            ax.scatter(
                shown["clean_accuracy"],
                shown["robust_accuracy_worst_case"],
                marker=marker,
                s=size,
                c=[colours[b] for b in shown["base_model"]],
                edgecolors="black",
                linewidths=0.6,
                zorder=3,
            )
        ax.set_xlim(*_zoom(rows["clean_accuracy"].to_numpy(float), min_span=0.02, pad=0.3))
        ax.set_ylim(*_zoom(rows["robust_accuracy_worst_case"].to_numpy(float), min_span=0.1, pad=0.12))
        ax.set(xlabel="clean accuracy", ylabel="robust accuracy (worst case)")
        ax.set_title(f"{threat['norm']} eps={threat['eps']:g}", fontsize=9)
        ax.grid(alpha=0.3)
        labelled.append((ax, rows))
    for ax in list(axes.flat)[len(threats) :]:
        ax.set_axis_off()
    if threats.empty:
        axes[0, 0].text(0.5, 0.5, "no worst case: no fixed-budget cell ran", ha="center", va="center")
    handles = [Line2D([], [], marker="o", linestyle="none", color=colours[b], markeredgecolor="black", label=b)
               for b in bases] if len(bases) > 1 else []  # fmt: skip
    if data["model"].isin(set(flagged)).any():
        handles.append(Line2D([], [], marker="X", markersize=9, linestyle="none", color="0.6", markeredgecolor="black",
                              label=FLAG_NOTE))  # fmt: skip
    if handles:
        axes[0, -1].legend(handles=handles, fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    fig.suptitle("clean vs worst-case robust accuracy, one point per defended model", fontsize=10)
    fig.tight_layout()
    for ax, rows in labelled:  # after the layout: the labels are placed in the axes' final pixels
        points = rows[["clean_accuracy", "robust_accuracy_worst_case"]].to_numpy(float)
        ink = [colours[b] if len(bases) > 1 else "black" for b in rows["base_model"]]
        place_labels(ax, points, [str(d) for d in rows["defence"]], ink)
    return fig


def privacy_tradeoff(table: pd.DataFrame) -> Figure:
    """Membership leakage (x: the strongest attack's TPR at 1 % FPR) vs utility (y: accuracy on held-out samples),
    one point per (model, defence), each labelled with its defence (and its DP epsilon where it has one)."""
    fig, ax = plt.subplots(figsize=(6.4, 4.8))
    x, y = table["tpr_at_fpr_0.01"].to_numpy(float), table["nonmember_accuracy"].to_numpy(float)
    ax.scatter(x, y, s=45, color="C0", edgecolors="black", linewidths=0.6, zorder=3)
    ax.set_xlim(*_zoom(x, min_span=0.05, pad=0.3))
    ax.set_ylim(*_zoom(y, min_span=0.05, pad=0.3))
    ax.set(xlabel="membership leakage: TPR at 1 % FPR (strongest attack)", ylabel="accuracy on non-members")
    ax.grid(alpha=0.3)
    ax.set_title("privacy vs utility, one point per (model, defence)", fontsize=10)
    fig.tight_layout()
    labels = [f"{r.model}" + (f" (eps {r.dp_epsilon:.2g})" if pd.notna(r.dp_epsilon) else "")
              for r in table.assign(dp_epsilon=table.get("dp_epsilon")).itertuples()]  # fmt: skip
    place_labels(ax, np.column_stack([x, y]), labels, ["black"] * len(labels))
    return fig


def transfer_matrix(matrix: pd.DataFrame, title: str, models: list[str]) -> Figure:
    """Robust accuracy of each target model (column) on each source model's examples (row), one panel per
    toolkit, a panel equal to an earlier one saying so; the diagonal (bold) is the direct attack. A pair that did
    not run is blank and says so."""
    toolkits = _order(matrix["toolkit"].unique())
    grids = {}
    for toolkit in toolkits:
        rows = matrix[matrix["toolkit"] == toolkit]
        grid = rows.pivot_table(index="source", columns="target", values="robust_accuracy", aggfunc="first")
        grids[toolkit] = grid.reindex(index=models, columns=models).to_numpy(float)
    flat = {t: (np.arange(g.size, dtype=float), np.nan_to_num(g.ravel(), nan=-1.0)) for t, g in grids.items()}
    same = identical_to(flat)
    n = len(models)
    side = 1.4 + 0.75 * n
    fig, axes = plt.subplots(1, len(toolkits), figsize=(side * len(toolkits) + 1.4, side + 0.8), squeeze=False,
                             layout="constrained")  # fmt: skip
    for ax, (toolkit, grid) in zip(axes[0], grids.items(), strict=True):
        image = ax.imshow(grid, vmin=0.0, vmax=1.0, cmap="viridis")
        for i in range(n):
            for j in range(n):
                value = grid[i, j]
                text = "not run" if np.isnan(value) else f"{value:.2f}"
                dark = not np.isnan(value) and value < 0.6
                ax.text(j, i, text, ha="center", va="center", fontsize=8, color="white" if dark else "black",
                        fontweight="bold" if i == j else "normal")  # fmt: skip
        ax.set_xticks(range(n), models, rotation=30, ha="right", fontsize=8)
        ax.set_yticks(range(n), models, fontsize=8)
        ax.set_xlabel("judged by (target)", fontsize=8)
        ax.set_title(_label(toolkit, same), fontsize=9)
    axes[0][0].set_ylabel("examples made on (source)", fontsize=8)
    bar = fig.colorbar(image, ax=list(axes[0]), shrink=0.8)
    bar.set_label("robust accuracy (diagonal: direct attack)", fontsize=8)
    fig.suptitle(title, fontsize=10)
    return fig


def _zoom(values: np.ndarray, min_span: float, pad: float) -> tuple[float, float]:
    """Axis limits around the values: at least `min_span` wide, plus `pad` of the span on each side."""
    lo, hi = float(values.min()), float(values.max())
    span = max(hi - lo, min_span)
    mid = (lo + hi) / 2
    return min(lo, mid - span / 2) - pad * span, max(hi, mid + span / 2) + pad * span


def place_labels(
    ax: Axes, points: np.ndarray, texts: list[str], colors: list[str], fontsize: float = 8
) -> list[Annotation]:
    """Labels that do not collide: greedily, each label takes the nearest offset around its point (sideways
    preferred) whose box stays in the axes and clears every marker and every label placed before it; of a few
    placement orders the cheapest wins. Labels not right beside their point get a leader line.
    Works in the axes' current pixels: call it after the layout."""
    renderer = ax.figure.canvas.get_renderer()
    frame = ax.get_window_extent(renderer)
    anchors = ax.transData.transform(points)
    sizes = []
    for text in texts:
        probe = ax.text(0, 0, text, fontsize=fontsize)
        box = probe.get_window_extent(renderer)
        probe.remove()
        sizes.append((box.width + 4, box.height + 2))
    orders = [np.arange(len(texts)), *(np.argsort(sign * anchors[:, axis]) for axis in (0, 1) for sign in (1, -1))]
    scale = ax.figure.dpi / 72
    layouts = [_greedy(anchors, sizes, (frame.x0, frame.y0, frame.x1, frame.y1), scale, order) for order in orders]
    _, spots = min(layouts, key=lambda layout: layout[0])
    return [
        ax.annotate(text, point, xytext=_offset(spot), textcoords="offset points", fontsize=fontsize, color=color,
                    ha=_HA[spot[1]], va=_VA[spot[2]], arrowprops=_leader(spot))
        for text, point, color, spot in zip(texts, points, colors, spots, strict=True)
    ]  # fmt: skip


def _greedy(anchors: np.ndarray, sizes: list[tuple[float, float]], frame: Box, scale: float, order: np.ndarray
            ) -> tuple[float, list[Spot]]:  # fmt: skip
    """One greedy placement in `order`: its total cost (overlap dominating distance) and each label's spot."""
    r = _POINT_RADIUS * scale
    taken: list[Box] = [(x - r, y - r, x + r, y + r) for x, y in anchors]
    spots: list[Spot] = [(_RADII[0], 1, 0)] * len(anchors)
    total = 0.0
    for i in order:
        (x, y), (w, h) = anchors[i], sizes[i]
        options = []
        for radius in _RADII:
            for dx, dy in _DIRECTIONS:
                ox, oy = _offset((radius, dx, dy))
                box = _box(x + ox * scale, y + oy * scale, w, h, dx, dy)
                clash = sum(_overlap(box, t) for t in taken)
                gap = _distance(box, anchors)
                near = bool((gap < gap[i]).any())  # nearer another point: the reader would pair them
                cost = 1e6 * _outside(box, frame) + 1e3 * clash + 60 * near + radius + 4 * abs(dy)
                options.append((cost, box, (radius, dx, dy)))
        cost, box, spots[i] = min(options, key=lambda option: option[0])
        taken.append(box)
        total += cost
    return total, spots


def _leader(spot: Spot) -> dict[str, Any] | None:
    """A thin line from label to point, unless the label sits right beside it."""
    radius, _, dy = spot
    if radius == _RADII[0] and dy == 0:
        return None
    return {"arrowstyle": "-", "color": "0.35", "linewidth": 0.7, "shrinkA": 0, "shrinkB": 4}


def _offset(spot: Spot) -> tuple[float, float]:
    """A spot's offset in points (diagonals a little closer: the box's corner is what nears the point)."""
    radius, dx, dy = spot
    k = radius * (0.75 if dx and dy else 1.0)
    return dx * k, dy * k


def _box(x: float, y: float, w: float, h: float, dx: int, dy: int) -> Box:
    """(x0, y0, x1, y1) of a w x h box anchored at (x, y) on the side (dx, dy) points to."""
    left = x - {1: 0.0, -1: w, 0: w / 2}[dx]
    bottom = y - {1: 0.0, -1: h, 0: h / 2}[dy]
    return left, bottom, left + w, bottom + h


def _distance(box: Box, points: np.ndarray) -> np.ndarray:
    """Each point's distance to the box (0 inside)."""
    dx = np.maximum.reduce([box[0] - points[:, 0], np.zeros(len(points)), points[:, 0] - box[2]])
    dy = np.maximum.reduce([box[1] - points[:, 1], np.zeros(len(points)), points[:, 1] - box[3]])
    return np.hypot(dx, dy)


def _overlap(a: Box, b: Box) -> float:
    """Area shared by two (x0, y0, x1, y1) boxes."""
    return max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))


def _outside(a: Box, frame: Box) -> float:
    """Area of a box outside the axes."""
    return (a[2] - a[0]) * (a[3] - a[1]) - _overlap(a, frame)


def png(fig: Figure) -> bytes:
    """The figure as PNG bytes (what MLflow stores), closed afterwards."""
    import io

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()
