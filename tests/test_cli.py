"""The `advbridge` command: fast help, listing, validation exit codes, a run, and the UI server."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import TRAINING, write_scenario
from mlflow.tracking import MlflowClient

from bridge.cli import main

BIN = Path(sys.executable).parent / "advbridge"
pytestmark = pytest.mark.usefixtures("model_cache")  # runs in subprocesses share the session's trained model

TINY = f"""
name: cli-tiny
data: {{n_samples: 12}}
model: {{arch: small_cnn, training: {json.dumps(TRAINING)}}}
attacks:
  - {{attack: fgsm, norm: linf, eps: [0.1, 0.2]}}
  - {{attack: fgsm, norm: l2, eps: 1.0}}
"""


def advbridge(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """The installed command in a process of its own (its start-up, exit status and output as a user sees them)."""
    return subprocess.run([str(BIN), *args], capture_output=True, text=True, env={**os.environ, **(env or {})})


Command = Callable[..., subprocess.CompletedProcess]


@pytest.fixture
def command(capsys: pytest.CaptureFixture[str]) -> Command:
    """The command's entry point (what the installed script calls) in this process: the same exit status and
    output, without a new interpreter importing torch for every call (about 3 s each)."""

    def run(*args: str) -> subprocess.CompletedProcess:
        capsys.readouterr()
        code = main(list(args))
        out, err = capsys.readouterr()
        return subprocess.CompletedProcess(["advbridge", *args], code, out, err)

    return run


def test_help_is_fast_and_imports_no_framework() -> None:
    start = time.perf_counter()
    out = advbridge("--help")
    elapsed = time.perf_counter() - start
    assert out.returncode == 0 and "run" in out.stdout and "validate" in out.stdout and "ui" in out.stdout
    assert elapsed < 1.0, f"advbridge --help took {elapsed:.2f}s"
    probe = "import sys; from bridge import cli\ntry: cli.main(['--help'])\nexcept SystemExit: pass\n"
    probe += "heavy = {'torch', 'mlflow', 'art', 'foolbox', 'torchattacks', 'pandas'} & set(sys.modules)\n"
    probe += "assert not heavy, heavy"
    assert subprocess.run([sys.executable, "-c", probe], capture_output=True).returncode == 0


def test_list_attacks_names_native_classes(command: Command) -> None:
    out = command("list", "attacks")
    assert out.returncode == 0
    lines = {tuple(line.split()[:2]): line for line in out.stdout.splitlines()[1:]}
    assert "ProjectedGradientDescent" in lines[("pgd", "linf")]
    assert "LinfProjectedGradientDescentAttack" in lines[("pgd", "linf")] and "PGD" in lines[("pgd", "linf")]
    assert lines[("fgsm", "l2")].split()[-1] == "-"  # torchattacks has no FGM: shown, not hidden
    assert "L2CarliniWagnerAttack" in lines[("cw", "l2")]
    markdown = command("list", "attacks", "--format", "markdown")
    assert markdown.stdout.startswith("# Attacks") and "| torchattacks | l2 | `PGDL2` |" in markdown.stdout


def test_validate_good_and_bad(tmp_path: Path, command: Command) -> None:
    out = command("validate", "scenarios/quickstart.yaml")
    assert out.returncode == 0, out.stderr
    assert "valid, 33 cells (0 unsupported)" in out.stdout
    out = command("validate", str(write_scenario(tmp_path, TINY)))
    assert "1 unsupported" in out.stdout and "torchattacks has no fgsm for norm l2" in out.stdout


def test_bad_file_exits_2_with_one_line_and_writes_no_run(
    tmp_path: Path, command: Command, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`run` as its own process (the exit status and the single line a shell sees), `validate` and `--set` through
    the entry point."""
    bad = write_scenario(tmp_path, TINY.replace("norm: l2", "norm: l7"), "bad.yaml")
    db = tmp_path / "store" / "mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{db}")
    for out in (command("validate", str(bad)), advbridge("run", str(bad))):
        assert out.returncode == 2
        assert out.stderr.strip().count("\n") == 0
        assert out.stderr.startswith(f"advbridge: error: {bad}: attacks[1].norm: Input should be")
        assert not db.exists()  # nothing is half-written
    out = command("run", str(write_scenario(tmp_path, TINY)), "--set", "attacks.0.eps=oops")
    assert out.returncode == 2 and "attacks[0].eps[0]: Input should be a valid number" in out.stderr
    assert not db.exists()


def test_run_prints_the_comparison_and_records_it(tmp_path) -> None:
    db = tmp_path / "store" / "mlflow.db"
    env = {"MLFLOW_TRACKING_URI": f"sqlite:///{db}"}
    out = advbridge("run", str(write_scenario(tmp_path, TINY)), "--set", "data.n_samples=10", env=env)
    assert out.returncode == 0, out.stderr
    assert "fgsm" in out.stdout and "torchattacks" in out.stdout
    assert "clean accuracy" in out.stdout and "on 10 samples" in out.stdout
    assert "unsupported: torchattacks has no fgsm for norm l2" in out.stdout
    assert "advbridge ui" in out.stdout and "#/experiments/" in out.stdout
    client = MlflowClient(f"sqlite:///{db}")
    runs = client.search_runs([client.get_experiment_by_name("cli-tiny").experiment_id])
    kinds = [r.data.tags.get("advbridge.kind") for r in runs]
    assert len(runs) == 1 + 2 * 3 + 2 + 1  # the parent, the cells that ran, the victim's probe
    assert kinds.count("evasion.attack") == 2 * 3 + 2 and kinds.count("evasion.victim") == 1
    assert all(r.info.status == "FINISHED" for r in runs)
    assert {r.data.params.get("n_samples") for r in runs} >= {"10"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow  # 26 s of a server's start and an HTTP-tracked run (test_mlflow_ui checks the page itself)
def test_ui_serves_the_same_store(tmp_path) -> None:
    db = tmp_path / "store" / "mlflow.db"
    uri = f"sqlite:///{db}"
    out = advbridge("run", str(write_scenario(tmp_path, TINY)), "--no-progress", env={"MLFLOW_TRACKING_URI": uri})
    assert out.returncode == 0, out.stderr
    port = _free_port()
    server = subprocess.Popen([str(BIN), "ui", "--port", str(port), "--uri", uri], stdout=subprocess.PIPE, text=True)
    try:
        assert f"http://127.0.0.1:{port}/" in server.stdout.readline()
        deadline = time.time() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as resp:
                    assert resp.status == 200
                    break
            except OSError:
                if time.time() > deadline or server.poll() is not None:
                    pytest.fail("the MLflow UI did not come up")
                time.sleep(0.5)
        body = json.dumps({"filter": "name = 'cli-tiny'", "max_results": 10}).encode()
        req = urllib.request.Request(
            f"http://127.0.0.1:{port}/api/2.0/mlflow/experiments/search",
            data=body,
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            experiments = json.load(resp)["experiments"]
        assert [e["name"] for e in experiments] == ["cli-tiny"]
        runs = MlflowClient(uri).search_runs([experiments[0]["experiment_id"]], "tags.toolkit = 'art'")
        run_id = runs[0].info.run_id
        url = f"http://127.0.0.1:{port}/get-artifact?path=per_sample.csv&run_uuid={run_id}"
        with urllib.request.urlopen(url, timeout=10) as resp:  # the UI can show the run's artifacts
            assert resp.read().decode().startswith("sample,label,target")
        # an http tracking URI: runs go through the server, artifacts into the server's store
        http = {"MLFLOW_TRACKING_URI": f"http://127.0.0.1:{port}"}
        out = advbridge("run", str(write_scenario(tmp_path, TINY.replace("cli-tiny", "cli-http"))), env=http)
        assert out.returncode == 0, out.stderr
        assert list((tmp_path / "store" / "artifacts").glob("*/*/artifacts/per_sample.csv"))
        assert MlflowClient(uri).get_experiment_by_name("cli-http") is not None
    finally:
        server.terminate()
        server.wait(timeout=20)
    left = subprocess.run(["pgrep", "-f", "--", f"--port {port}"], capture_output=True, text=True).stdout.split()
    assert not left, f"the UI left processes behind: {left}"


def test_list_models_and_datasets_and_the_cifar_scenario_validates(command: Command) -> None:
    models = command("list", "models")
    assert models.returncode == 0
    for arch in ("small_cnn", "lenet", "resnet18", "preact_resnet18", "wide_resnet", "densenet", "inception"):
        assert arch in models.stdout
    datasets = command("list", "datasets")
    for name in ("digits", "mnist", "fashion_mnist", "cifar10", "cifar100", "image_folder", "npz"):
        assert name in datasets.stdout
    out = command("validate", "scenarios/cifar10.yaml")  # the data is not here: what `run` would refuse
    assert out.returncode == 2 and not out.stdout and len(out.stderr.splitlines()) == 1
    assert "scenarios/cifar10.yaml: data: cifar10:" in out.stderr and "cifar-10-python.tar.gz" in out.stderr
    for scenario in ("scenarios/cifar10.yaml", "scenarios/privacy-cifar10.yaml"):
        out = command("validate", scenario, "--set", "data.download=true")
        assert out.returncode == 0 and "`run` downloads cifar-10-python.tar.gz first" in out.stdout
    assert command("validate", "scenarios/architectures.yaml").returncode == 0
