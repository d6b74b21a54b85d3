"""MLflow's own UI on a tiny real study, in headless Chromium: the link `advbridge ui` prints opens the runs table
with every run on its own row under a readable, unique name, and the metrics a reviewer compares as columns.

`ADVBRIDGE_WRITE_DOCS_IMG=1 pytest -m slow tests/test_mlflow_ui.py` also writes the screenshot the README shows
(docs/img/mlflow-runs.png).
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import module_store
from mlflow.tracking import MlflowClient

from bridge import run_scenario

BIN = Path(sys.executable).parent / "advbridge"
DOCS_IMG = Path(__file__).resolve().parent.parent / "docs" / "img" / "mlflow-runs.png"
CHROMIUM = pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium is absent (.ci/run installs it)")
pytestmark = [pytest.mark.slow, CHROMIUM]

# A fixed-budget cell and a minimum-norm one (the only kind with a median distance), from two toolkits. The model
# trains for 3 epochs, not the other tests' 20, which alone would take longer than all the rest: the table is the
# point here, not the model.
SCENARIO = {
    "name": "ui-tiny",
    "data": {"dataset": "digits", "n_samples": 30},
    "model": {"arch": "small_cnn", "training": {"epochs": 3, "lr": 1e-3, "batch_size": 64, "seed": 0}},
    "attacks": [
        {"attack": "fgsm", "norm": "linf", "eps": 0.1, "toolkit": "torchattacks"},
        {"attack": "deepfool", "norm": "l2", "steps": 10, "toolkit": "art"},
    ],
}
# The study's name (scenario, samples, when) and a cell's (toolkit, attack-norm, budget, then variant and victim).
STUDY_NAME = re.compile(r"ui-tiny · 30 samples · \d{4}-\d\d-\d\d \d\d:\d\d")
CELL_NAME = re.compile(r"(art|foolbox|torchattacks) · [a-z0-9_:]+-l(inf|0|1|2)( eps=[0-9.e-]+)?( · [^·]+)*")
KEY_HEADERS = {"robust_accuracy", "attack_success_rate", "median_distance", "clean_accuracy", "status"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def served(tmp_path_factory, model_cache):
    """The study in a fresh store, `advbridge ui` serving it: (the parent run id, the store's URI, the link to the
    experiment that the command printed). The server is stopped, and waited for, at the end."""
    with module_store(tmp_path_factory, "mlflow-ui") as (_, uri):
        table = run_scenario(SCENARIO, log=lambda _: None)
        port = _free_port()
        cmd = [str(BIN), "ui", "--port", str(port), "--uri", uri]
        server = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        try:
            printed = [server.stdout.readline() for _ in range(3)]
            (link,) = [line.split(": ", 1)[1].strip() for line in printed if line.startswith("  ui-tiny: ")]
            deadline = time.time() + 60
            while True:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                        break
                except OSError:
                    if time.time() > deadline or server.poll() is not None:
                        pytest.fail(f"the MLflow UI did not come up; it printed {printed}")
                    time.sleep(0.3)
            yield table.attrs["parent_run_id"], uri, link
        finally:
            server.terminate()
            server.wait(timeout=30)
    deadline = time.time() + 10
    while (left := _serving(port)) and time.time() < deadline:
        time.sleep(0.2)
    assert not left, f"the UI left processes behind: {left}"


def _serving(port: int) -> list[str]:
    """The ids of processes whose command line names `--port PORT` (`--`: else pgrep takes it for an option)."""
    found = subprocess.run(["pgrep", "-f", "--", f"--port {port}"], capture_output=True, text=True)
    assert found.returncode in (0, 1), found.stderr
    return found.stdout.split()


def browse(link: str) -> dict:
    """The runs table as Chromium shows it at `link`: header texts, one {column id: text} per row (top to bottom)
    and a screenshot (PNG). MLflow's assistant panel, which opens itself on a first visit, is closed beforehand,
    as a user closes it once; the window is wide enough that no column is virtualised away."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=shutil.which("chromium"))
        page = browser.new_page(viewport={"width": 1760, "height": 600})
        page.add_init_script(
            "localStorage.setItem('mlflow.assistant.panelOpen_v1', 'false');"
            "localStorage.setItem('mlflow.assistant.fab.autoOpenedOnFirstLoad_v1', 'true');"
        )
        page.goto(link, wait_until="load")
        page.wait_for_selector("[role=gridcell][col-id='metrics.`robust_accuracy`']", timeout=30_000)
        page.wait_for_timeout(1000)  # the view's column widths are applied once the grid has settled
        headers = page.eval_on_selector_all("[role=columnheader]", "els => els.map(e => e.innerText.trim())")
        cells = page.eval_on_selector_all(
            "[role=row][row-index] [role=gridcell][col-id]",
            "els => els.map(e => [+e.closest('[role=row]').getAttribute('row-index'), e.getAttribute('col-id'),"
            " e.innerText.trim()])",
        )
        shot = page.screenshot()
        browser.close()
    rows: dict[int, dict[str, str]] = {}
    for index, column, text in cells:
        rows.setdefault(index, {})[column] = text
    return {"headers": set(headers), "rows": [rows[i] for i in sorted(rows)], "screenshot": shot}


def test_the_printed_link_shows_each_run_by_name_with_the_key_metrics(served) -> None:
    parent_id, uri, link = served
    assert link.endswith("/runs?viewStateShareKey=advbridge")
    seen = browse(link)
    if os.environ.get("ADVBRIDGE_WRITE_DOCS_IMG") == "1":
        DOCS_IMG.parent.mkdir(parents=True, exist_ok=True)
        DOCS_IMG.write_bytes(seen["screenshot"])
    assert KEY_HEADERS <= seen["headers"], seen["headers"]
    # every run on a row of its own (a study's cells are not folded under it), named as in the store
    client = MlflowClient(uri)
    runs = {r.info.run_name: r for r in client.search_runs([client.get_run(parent_id).info.experiment_id])}
    names = [row["attributes.`Run Name`"].splitlines()[-1] for row in seen["rows"]]  # after the run's colour
    assert sorted(names) == sorted(runs) and len(set(names)) == len(names)
    study = client.get_run(parent_id).info.run_name
    assert STUDY_NAME.fullmatch(study) and study in names
    cells = [n for n in names if runs[n].data.tags.get("advbridge.kind") == "evasion.attack"]
    assert sorted(cells) == ["art · deepfool-l2", "torchattacks · fgsm-linf eps=0.1"]
    assert all(CELL_NAME.fullmatch(n) for n in cells), cells
    # each cell's row shows its own numbers, the strongest attack first
    for row, name in zip(seen["rows"], names, strict=True):
        metrics = runs[name].data.metrics
        for key in ("robust_accuracy", "attack_success_rate", "median_distance", "clean_accuracy"):
            shown = row[f"metrics.`{key}`"]
            if key in metrics:
                assert float(shown) == pytest.approx(metrics[key]), (name, key, shown)
            else:
                assert shown == "-", (name, key, shown)
        assert row["tags.`status`"] == runs[name].data.tags.get("status", "-")
    robust = [float(r["metrics.`robust_accuracy`"]) for r in seen["rows"] if r["metrics.`robust_accuracy`"] != "-"]
    assert len(robust) == 2 and robust == sorted(robust)
    assert "median_distance" in runs["art · deepfool-l2"].data.metrics
