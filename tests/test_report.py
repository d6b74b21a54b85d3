"""`advbridge report`: the verdict's rules, a tiny real study's page opened in headless Chromium, and each cell's
command reproducing exactly its cell."""

from __future__ import annotations

import io
import json
import math
import re
import shlex
import shutil
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from conftest import TRAINING, module_store, write_scenario
from mlflow.tracking import MlflowClient

from bridge import run_scenario
from bridge.cli import main
from bridge.report.verdict import best_defences, describe, disagreements, verdicts
from bridge.runner.reproduce import cell_overrides, flow, scenario_as_run
from bridge.scenario.load import load, load_raw

# The file says 24 samples; the study runs with --set data.n_samples=16, which each cell's command must restore.
SCENARIO = f"""
name: report-tiny
seed: 0
batch_size: 16
data: {{dataset: digits, n_samples: 24}}
model: {{arch: small_cnn, training: {json.dumps(TRAINING)}}}
defences:
  - none
  - {{kind: feature_squeezing, name: squeeze-exact, bit_depth: 3, gradient: exact}}
transfer: true
attacks:
  - {{attack: fgsm, norm: linf, eps: [0.05, 0.1], toolkit: [art, torchattacks]}}
  - {{attack: pgd, norm: linf, eps: [0.05, 0.1], steps: 10, step_size: 0.01, random_start: false,
     toolkit: [art, torchattacks]}}
"""
OVERRIDES = ["data.n_samples=16"]
COLUMNS = ["model", "defence", "attack", "norm", "eps", "targeted", "variant", "evaluation", "source", "toolkit",
           "status", "clean_accuracy", "robust_accuracy", "run_id"]  # fmt: skip


# --- the verdict's rules, on hand-made tables ------------------------------------------------------------------


def _row(model: str, defence: str, attack: str, eps: float, toolkit: str, robust: float, clean: float = 0.9,
         evaluation: str = "direct", variant: str = "") -> dict:  # fmt: skip
    run_id = f"{model}-{attack}-{eps}-{toolkit}-{evaluation}-{variant}"
    source = model if evaluation == "direct" else model.split("/")[0]  # a transfer's: the undefended model
    values = [model, defence, attack, "linf", eps, "none", variant, evaluation, source, toolkit, "ok", clean, robust,
              run_id]  # fmt: skip
    return dict(zip(COLUMNS, values, strict=True))


def _worst(rows: list[tuple[str, float, float]]) -> pd.DataFrame:
    return pd.DataFrame([{"model": m, "norm": "linf", "eps": e, "cells": 3, "robust_accuracy_worst_case": w,
                          "best_single_cell": f"pgd-linf eps={e:g} | art", "best_single_cell_robust_accuracy": w}
                         for m, e, w in rows])  # fmt: skip


def _checks(rows: list[tuple[str, str, str, str]]) -> pd.DataFrame:
    return pd.DataFrame([{"model": m, "name": n, "question": "?", "status": s, "cells": c, "detail": "why"}
                         for m, n, s, c in rows])  # fmt: skip


def test_ties_within_one_sample_are_called_ties_and_clean_accuracy_is_per_model() -> None:
    table = pd.DataFrame([
        _row("a", "none", "pgd", 0.1, "art", 0.50), _row("a", "none", "pgd", 0.1, "foolbox", 0.54),
        _row("a", "none", "pgd", 0.1, "torchattacks", 0.60), _row("b", "none", "pgd", 0.1, "art", 0.30, clean=0.7),
    ])  # fmt: skip
    a, b = verdicts(table, _checks([]), _worst([("a", 0.1, 0.45), ("b", 0.1, 0.30)]), n_samples=20)
    assert (a.clean_accuracy, b.clean_accuracy) == (0.9, 0.7)  # each model its own, not the first one's
    (threat,) = a.threats
    assert threat.worst_case == 0.45 and threat.cells == 3
    assert describe(threat.strongest) == "pgd (tie: art, foolbox)"  # 0.54 is within one sample (0.05) of 0.50
    assert describe(b.threats[0].strongest) == "pgd (art)"
    mixed = verdicts(
        pd.DataFrame([_row("a", "none", "fgsm", 0.1, "art", 0.5), _row("a", "none", "pgd", 0.1, "art", 0.5)]),
        _checks([]),
        _worst([]),
        20,
    )
    assert describe(mixed[0].threats[0].strongest) == "tie: fgsm (art); pgd (art)"
    assert math.isnan(mixed[0].threats[0].worst_case)  # no worst case recorded: shown as none, not as 0
    # a minimum-norm cell run without eps, thresholded at this eps, was the strongest: named, though it has no row
    worst = _worst([("b", 0.1, 0.2)]).assign(best_single_cell="deepfool-linf | foolbox")
    (b,) = verdicts(table[table["model"] == "b"], _checks([]), worst, n_samples=20)
    assert describe(b.threats[0].strongest) == "deepfool-linf (minimum-norm, at this eps) (foolbox)"


def test_a_flagged_defence_is_never_best_and_its_transfer_number_stands_beside_it() -> None:
    table = pd.DataFrame([
        _row("m", "none", "pgd", 0.1, "art", 0.40), _row("m", "none", "pgd", 0.2, "art", 0.10),
        _row("m/squeeze", "squeeze", "pgd", 0.1, "art", 0.98), _row("m/squeeze", "squeeze", "pgd", 0.2, "art", 0.97),
        _row("m/squeeze", "squeeze", "pgd", 0.1, "art", 0.46, evaluation="transfer"),
        _row("m/jpeg", "jpeg", "pgd", 0.1, "art", 0.55), _row("m/jpeg", "jpeg", "pgd", 0.2, "art", 0.20),
        _row("m/jpeg", "jpeg", "pgd", 0.1, "art", 0.50, evaluation="transfer"),
    ])  # fmt: skip
    checks = _checks([
        ("m/squeeze", "direct_beats_transfer", "failed", "pgd-linf eps=0.1 | art transferred (0.460 < best 0.980)"),
        ("m/squeeze", "monotone_in_eps", "passed", ""), ("m/jpeg", "monotone_in_eps", "passed", ""),
    ])  # fmt: skip
    worst = _worst([("m", 0.1, 0.4), ("m", 0.2, 0.1), ("m/squeeze", 0.1, 0.98), ("m/squeeze", 0.2, 0.97),
                    ("m/jpeg", 0.1, 0.55), ("m/jpeg", 0.2, 0.2)])  # fmt: skip
    found = verdicts(table, checks, worst, n_samples=100)
    none, squeeze, jpeg = found
    assert squeeze.flagged and not none.flagged and not jpeg.flagged and squeeze.base == jpeg.base == "m"
    at_01, at_02 = squeeze.threats
    assert at_01.worst_case == 0.98 and at_01.transfer[0].robust_accuracy == 0.46 and at_01.bound == 0.46
    assert at_01.doubts == ("direct_beats_transfer",) and at_02.doubts == ()  # next to the number it doubts
    assert jpeg.threats[0].bound == 0.50  # its transferred set is lower than its direct worst case
    best = {b.eps: b for b in best_defences(found, n_samples=100)}
    assert best[0.1].defences == ("jpeg",) and best[0.1].robust_accuracy == 0.5 and best[0.1].flagged == ("squeeze",)
    assert best[0.2].defences == ("jpeg",) and "squeeze" not in best[0.2].defences  # 0.97 direct, but flagged


def test_a_check_naming_cells_doubts_only_their_eps_and_one_about_the_model_doubts_all() -> None:
    table = pd.DataFrame([_row("m", "none", "pgd", e, "art", 0.5) for e in (0.1, 0.15)])
    checks = _checks([("m", "more_steps_not_weaker", "failed", "pgd-linf eps=0.15 | art steps=20"),
                      ("m", "gradients_not_vanishing", "failed", "(model)")])  # fmt: skip
    (v,) = verdicts(table, checks, _worst([]), 10)
    assert [t.doubts for t in v.threats] == [("gradients_not_vanishing",),
                                             ("more_steps_not_weaker", "gradients_not_vanishing")]  # fmt: skip


def test_toolkits_disagree_beyond_the_threshold_and_one_sample() -> None:
    table = pd.DataFrame(
        [
            _row("m", "none", "pgd", 0.1, "art", 0.50),
            _row("m", "none", "pgd", 0.1, "foolbox", 0.58),
            _row("m", "none", "fgsm", 0.1, "art", 0.50),
            _row("m", "none", "fgsm", 0.1, "foolbox", 0.53),
        ]
    )
    (d,) = disagreements(table, n_samples=100)
    assert (d.attack, round(d.spread, 6), [c.toolkit for c in d.cells]) == ("pgd", 0.08, ["art", "foolbox"])
    assert disagreements(table, n_samples=10) == []  # 0.08 is less than one sample of 10
    # two variants of one attack in one toolkit are two specs, not two toolkits disagreeing; each keeps its name
    table = pd.DataFrame(
        [_row("m", "none", "pgd", 0.1, "art", r, variant=f"steps={n}") for n, r in ((10, 0.6), (20, 0.4))]
    )
    assert disagreements(table, n_samples=100) == []
    (v,) = verdicts(table, _checks([]), _worst([]), 100)
    assert describe(v.threats[0].strongest) == "pgd [steps=20] (art)"


def test_a_python_scenarios_cell_overrides_reproduce_its_cell() -> None:
    raw = {"name": "py", "data": {"n_samples": 10}, "model": {"arch": "small_cnn", "training": TRAINING},
           "defences": ["none", {"kind": "feature_squeezing", "bit_depth": 3, "gradient": "bpda"}], "transfer": True,
           "attacks": [{"attack": "pgd", "norm": "linf", "eps": [0.1, 0.2], "steps": 5, "toolkit": ["art", "foolbox"]}],
           "detector": {"attack": "pgd", "norm": "linf", "eps": 0.1, "train_toolkit": "art", "epochs": 2}}  # fmt: skip
    plan = load_raw(raw)
    effective, recovered = scenario_as_run("", "", plan.scenario.model_dump(mode="json"))
    assert recovered == []
    cell = next(c for c in plan.cells if c.spec.toolkit == "foolbox" and c.spec.eps == 0.2)
    for defence, evaluation, names in (("squeeze-3bit", "direct", ["squeeze-3bit"]),
                                       ("squeeze-3bit", "transfer", ["none", "squeeze-3bit"])):  # fmt: skip
        row = pd.Series({"model": f"small_cnn/{defence}", "defence": defence, "evaluation": evaluation,
                         "source": "small_cnn" if evaluation == "transfer" else f"small_cnn/{defence}"})  # fmt: skip
        overrides = [
            f"{k}={flow(v)}" for k, v in cell_overrides(effective, cell.spec.model_dump(mode="json"), row).items()
        ]
        again = load_raw(raw, overrides)
        assert [c.spec for c in again.cells] == [cell.spec]
        assert [str(getattr(d, "name", d)) for d in again.scenario.defences] == names
        assert again.scenario.detector is None and again.scenario.model == plan.scenario.model


# --- a real study, its page in Chromium -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def study(tmp_path_factory, model_cache):
    with module_store(tmp_path_factory, "report") as (tmp, uri):
        path = write_scenario(tmp, SCENARIO)
        table = run_scenario(path, OVERRIDES, log=lambda _: None)
        assert main(["report", "-o", str(tmp / "page.html")]) == 0  # latest: this study
        yield table, uri, tmp, path


def test_report_writes_the_page_and_markdown_and_logs_them_on_the_study(study, capsys) -> None:
    table, uri, tmp, _ = study
    html, markdown = (tmp / "page.html").read_text(), (tmp / "page.md").read_text()
    run_id = table.attrs["parent_run_id"]
    assert run_id in html and run_id in markdown
    client = MlflowClient(uri)
    logged = {a.path for a in client.list_artifacts(run_id, "report")}
    assert logged == {"report/report.html", "report/report.md"}
    assert main(["report", run_id, "-o", str(tmp / "again.html"), "--uri", uri]) == 0
    assert f"Report of study {run_id}" in capsys.readouterr().out
    assert main(["report", "nope", "-o", str(tmp / "x.html"), "--uri", uri]) == 2
    assert main(["report", "-o", str(tmp / "x.md")]) == 2
    assert "give the HTML page's path" in capsys.readouterr().err
    # markdown: flagged first, then the verdict table; every cell of the table, nothing merged
    assert markdown.index("**FLAGGED**") < markdown.index("| Model | Defence | Checks |")
    assert markdown.count("| small_cnn/squeeze-exact | fgsm | linf |") == 8  # 2 eps x 2 toolkits x direct, transfer
    assert not re.search(r"^- small_cnn.*\*\*squeeze-exact\*\*", markdown, re.M)  # never named best


CHROMIUM = pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium is absent (.ci/run installs it)")


def browse(page_path: Path) -> dict[str, Any]:
    """The page opened in headless Chromium: console errors, the URLs it requested, its images' natural widths,
    the verdict's texts and a full-page screenshot (PNG)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=shutil.which("chromium"))
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        errors, fetched = [], []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("request", lambda r: fetched.append(r.url))
        page.goto(page_path.as_uri(), wait_until="load")
        texts = "els => els.map(e => e.textContent)"
        seen = {
            "errors": errors,
            "fetched": fetched,
            "widths": page.eval_on_selector_all("img", "imgs => imgs.map(i => i.complete ? i.naturalWidth : 0)"),
            "rows": page.eval_on_selector_all(
                "#verdicts tr[data-model]", "els => Object.fromEntries(els.map(e => [e.dataset.model, e.innerText]))"
            ),
            "best": page.eval_on_selector_all("#best .best-defence", texts),
            "not_ranked": page.eval_on_selector_all("#best .not-ranked", texts),
            "alert": " ".join(page.eval_on_selector_all("#flagged", texts)),
            "screenshot": page.screenshot(full_page=True),
        }
        browser.close()
    return seen


@CHROMIUM
def test_the_page_opens_in_chromium_and_names_squeeze_exact_flagged_not_best(study) -> None:
    from PIL import Image

    table, _, tmp, _ = study
    transferred = table[(table["evaluation"] == "transfer") & (table["eps"] == 0.1)]["robust_accuracy"].min()
    seen = browse(tmp / "page.html")
    assert seen["errors"] == []
    assert all(url.startswith(("file:", "data:")) for url in seen["fetched"]), seen["fetched"]  # nothing fetched
    assert len(seen["widths"]) >= 4 + 4 and all(w > 0 for w in seen["widths"]), seen["widths"]  # plots, grids
    colours = Image.open(io.BytesIO(seen["screenshot"])).convert("RGB").getcolors(maxcolors=1 << 20)
    assert len(colours) > 200  # text, tables, plots: not a blank page
    flagged = seen["rows"]["small_cnn/squeeze-exact"]
    assert "FLAGGED" in flagged and "direct_beats_transfer" in flagged and f"transferred: {transferred:.3f}" in flagged
    assert "FLAGGED" not in seen["rows"]["small_cnn"]
    assert "small_cnn/squeeze-exact" in seen["alert"]
    assert seen["best"] == ["none", "none"] and seen["not_ranked"] == ["squeeze-exact", "squeeze-exact"]


@pytest.mark.slow
@CHROMIUM
def test_the_defences_scenarios_report_flags_squeeze_exact_rather_than_best(store, model_cache, tmp_path) -> None:
    fewer = ["data.n_samples=60", "model.training.epochs=10", "robustness.clever.n_samples=1"]
    table = run_scenario("scenarios/defences.yaml", fewer, log=lambda _: None)
    assert main(["report", table.attrs["parent_run_id"], "-o", str(tmp_path / "defences.html")]) == 0
    seen = browse(tmp_path / "defences.html")
    assert seen["errors"] == [] and all(w > 0 for w in seen["widths"])
    assert "FLAGGED" in seen["rows"]["small_cnn/squeeze-exact"]
    assert seen["best"] and not any("squeeze-exact" in b for b in seen["best"])
    assert all("squeeze-exact" in n for n in seen["not_ranked"])


def test_each_cells_command_runs_exactly_that_cell(study) -> None:
    table, _, tmp, path = study
    markdown = (tmp / "page.md").read_text()
    found = r"\((?:direct|transfer from [\w/-]+), run `(\w+)`\):\n\n  ```\n  (.*?)\n  ```"
    commands = re.findall(found, markdown, re.S)
    assert len(commands) == len(table) == 24
    original = {(c.spec.attack, c.spec.eps, c.spec.toolkit): c.spec for c in load(path, OVERRIDES).cells}
    rows = table.set_index("run_id")
    for run_id, command in commands:
        args = shlex.split(command.replace("\\\n", " "))
        assert args[:3] == ["advbridge", "run", path.name] and args[3::2] == ["--set"] * (len(args[3:]) // 2)
        row = rows.loc[run_id]
        plan = load(path, args[4::2])
        assert [c.spec for c in plan.cells] == [original[(row["attack"], row["eps"], row["toolkit"])]]
        defences = [str(getattr(d, "name", d)) for d in plan.scenario.defences]
        transferred = row["evaluation"] == "transfer"
        assert defences == (["none", row["defence"]] if transferred else [row["defence"]])
        assert plan.scenario.transfer == (["defences"] if transferred else []) and plan.scenario.data.n_samples == 16


def test_another_study_kinds_section_is_shown_as_its_summary_wrote_it() -> None:
    """A scenario without an evasion grid (membership inference alone, say): its kind's markdown becomes a section
    (HTML escaped, never rendered), with its figures and checks, and the evasion sections say there is no grid."""
    from bridge.report.html import ReportView, Section, render
    from bridge.studies.evasion.aggregate import TABLE_COLUMNS

    checks = pd.DataFrame([{"model": "m", "name": "membership_control_at_chance", "question": "q", "status": "failed",
                            "cells": "lira", "detail": "control AUC 0.71"}])  # fmt: skip
    text = "| attack | auc |\n|---|---|\n| lira <script>x</script> | 0.83 |\n\nAUC from the bridge's scores."
    png = (Path(__file__).parent.parent / "docs" / "img" / "tradeoff.png").read_bytes()
    view = ReportView(
        scenario="privacy", run_id="r", experiment="e", tracking_uri="sqlite:///x", n_samples=0,
        table=pd.DataFrame(columns=TABLE_COLUMNS), checks=pd.DataFrame(columns=["model", "name", "status"]),
        worst=pd.DataFrame(), figures={}, specs={}, notes={}, samples={}, scenario_file="", scenario_text="name: x",
        commands={}, recovered=None, sections=[Section("membership", text, {"membership/roc.png": png}, checks)],
    )  # fmt: skip
    html, markdown = render(view)
    section = html.split('<section id="membership">')[1].split("</section>")[0]
    assert "<h2>Membership inference</h2>" in section and "<td>0.83</td>" in section
    assert "&lt;script&gt;" in section and "<script>" not in html
    assert "membership/roc.png" in section and "data:image/png;base64," in section
    assert "control AUC 0.71" in section and 'id="verdict"' not in html
    assert "No evasion grid in this scenario" in html and "No evasion grid in this scenario" in markdown
    assert "## Membership inference" in markdown and "check membership_control_at_chance (m): **failed**" in markdown
