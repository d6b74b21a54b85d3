"""The patch study's table, curves, patch images and checks, computed from persisted results alone (a pure
function of the results and the plan's meta, so a re-aggregated study shows exactly what the first run showed)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from bridge.engine.result import Aggregate, Result
from bridge.studies.patch.checks import run_checks
from bridge.studies.patch.plots import curves, patch_image, sample_grid

KIND = "patch"
TABLE_COLUMNS = [
    "source", "toolkit", "native_class", "model", "defence", "evaluation", "dataset", "attack", "target", "scale",
    "success", "control_success", "clean_accuracy", "n_trials", "n_samples", "status", "run_id",
]  # fmt: skip
SHOWN = ["source", "toolkit", "model", "scale", "success", "control_success", "clean_accuracy", "status"]


@dataclass
class Summary:
    table: pd.DataFrame  # one row per evaluation (patch x judging victim x scale), and one per patch that did not run
    checks: pd.DataFrame
    record: Aggregate
    markdown: str  # the report's section: the table with its legend


def legend(meta: dict[str, Any]) -> str:
    """What each number of the table means."""
    goal = (f"targeted at class {meta['target']}: `success` is the share of evaluation images not of that class "
            "that the patched image makes it" if meta["target"] is not None else
            "untargeted: `success` is the share of correctly classified evaluation images that the patched image "
            "makes wrong")  # fmt: skip
    return (
        f"A universal {meta['shape']} patch per model and toolkit, trained on the {meta['split']} split over random "
        f"scales, rotations (up to {meta['rotation']:g}°) and locations, {goal}. Every patch is pasted by the "
        f"bridge's own function at each `scale` (the fraction of the image it covers), {meta['draws']} seeded "
        "placement(s) per image, the same placements for every patch. `source`: the model the patch was made on; "
        "`model`: the victim judging it (the source itself, the source behind a preprocessing defence, or another "
        "model: a transfer); `control_success`: the same measure for a random-noise patch of the same shape and "
        "placements (what covering part of the image does by itself); `clean_accuracy`: the victim's accuracy on "
        "the unpatched images. `bridge`: the bridge's torch patch (Adam); `art`: ART's class named in the table."
    )


def _images(results: list[Result], meta: dict[str, Any]) -> dict[str, bytes]:
    """Each patch as an image, and its patched samples on its own model at the largest scale."""
    bounds = tuple(meta["bounds"])
    files: dict[str, bytes] = {}
    for r in results:
        row = r.row
        if r.kind == "train" and "patch" in r.arrays:
            title = f"{row['toolkit']} patch for {row['source']}"
            files[f"{KIND}/patches/{row['source']}/{row['toolkit']}.png"] = patch_image(
                r.arrays["patch"], meta["shape"], bounds, title
            )
        if r.kind == "evaluate" and "grid_x" in r.arrays:
            title = f"{row['toolkit']} patch on {row['model']} at scale {row['scale']:g} (true → predicted)"
            files[f"{KIND}/grids/{row['source']}/{row['toolkit']}.png"] = sample_grid(
                r.arrays["grid_x"], r.arrays["grid_y"], r.arrays["grid_pred"], bounds, title
            )
    return files


def aggregate(results: list[Result], meta: dict[str, Any]) -> Summary:
    kept = [r for r in results if r.state != "skipped" and (r.kind == "evaluate" or not r.ok)]
    table = pd.DataFrame([{**r.row, "run_id": r.run_id or None} for r in kept], columns=TABLE_COLUMNS)
    table = table.sort_values(["source", "toolkit", "evaluation", "model", "scale"], kind="stable", ignore_index=True)
    checks = run_checks(table)
    shown = table[SHOWN].to_markdown(index=False, floatfmt=".3f")
    markdown = f"{legend(meta)}\n\n{shown}\n"
    files: dict[str, str | bytes] = {f"{KIND}/table.csv": table.to_csv(index=False), f"{KIND}/table.md": markdown,
                                     f"{KIND}/checks.csv": checks.to_csv(index=False)}  # fmt: skip
    files |= _images(results, meta)
    metrics: dict[str, float] = {f"{KIND}.checks_failed": float((checks["status"] == "failed").sum())}
    ok = table[table["status"] == "ok"]
    if not ok.empty:
        files[f"{KIND}/plots/success_vs_scale.png"] = curves(ok, f"adversarial patch ({meta['scenario']})")
    for r in ok.itertuples():
        metrics[f"{KIND}.success.{r.toolkit}.{r.source}.{r.model}.s{r.scale:g}"] = float(r.success)
    record = Aggregate(files, {f"{KIND}/table.json": table, f"{KIND}/checks.json": checks}, metrics)
    return Summary(table, checks, record, markdown)
