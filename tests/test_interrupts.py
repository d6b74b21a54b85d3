"""Ctrl-C (or SIGTERM) during a study: one line, exit 130 (143), the parent run KILLED, nothing half-written in
the model cache or the data folder."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from bridge.data import files

ADVBRIDGE = str(Path(sys.executable).with_name("advbridge"))
SCENARIO = """\
name: interrupted
data: {n_samples: 8}
model: {arch: small_cnn, training: {epochs: 500}}
attacks:
  - {attack: fgsm, norm: linf, eps: 0.1, toolkit: art}
"""


@pytest.mark.parametrize(
    ("sent", "code", "line"),
    [(signal.SIGINT, 130, "advbridge: interrupted"), (signal.SIGTERM, 143, "advbridge: terminated")],
)
def test_ctrl_c_or_sigterm_while_training_ends_the_study_killed_in_one_line(
    sent: int, code: int, line: str, tmp_path: Path
) -> None:
    path = tmp_path / "scenario.yaml"
    path.write_text(SCENARIO)
    uri = f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"
    cache = tmp_path / "cache"
    env = {**os.environ, "ADVBRIDGE_CACHE": str(cache), "MLFLOW_TRACKING_URI": uri}
    # As from a terminal: a shell that ran these tests in the background (`make test &`) left SIGINT ignored, and an
    # ignored signal stays ignored across exec (a handler does not), so Ctrl-C would never reach the study.
    inherited = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        run = subprocess.Popen(
            [ADVBRIDGE, "run", str(path), "--no-progress"], env=env, text=True,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
    finally:
        signal.signal(signal.SIGINT, inherited)
    seen = []
    for printed in run.stderr:  # the study has started training its model (500 epochs: minutes)
        seen.append(printed)
        if printed.startswith("training small_cnn"):
            break
    assert run.poll() is None, "".join(seen)
    masks = _signal_masks(run.pid)
    run.send_signal(sent)
    try:
        _, err = run.communicate(timeout=60)
    except subprocess.TimeoutExpired:  # say which signals the child blocked, ignored and caught
        run.kill()
        out, err = run.communicate()
        pytest.fail(f"still running 60 s after signal {sent}; its signal masks when sent: {masks}; stderr: "
                    f"{''.join(seen)}{err}; stdout ends: {out[-300:]}")  # fmt: skip
    assert run.returncode == code, err
    assert err.strip().splitlines() == [line], err
    client = MlflowClient(uri)
    (parent,) = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert parent.info.status == "KILLED" and parent.data.tags["advbridge.role"] == "study"
    left = [p.name for p in (cache / "models").iterdir() if not p.name.endswith(".lock")]
    assert left == [], f"half-written files in the model cache: {left}"


def _signal_masks(pid: int) -> str:
    """The blocked, ignored and caught signal masks of process `pid` (Linux's /proc), for a failure's message."""
    status = Path(f"/proc/{pid}/status")
    if not status.exists():
        return "unknown"
    lines = status.read_text().splitlines()
    return "; ".join(line for line in lines if line.startswith(("SigBlk", "SigIgn", "SigCgt")))


def test_an_interrupted_download_leaves_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:

    source = tmp_path / "source.gz"
    source.write_bytes(b"x" * 1000)

    def interrupted(src, dst, length):
        dst.write(src.read(10))
        raise KeyboardInterrupt

    monkeypatch.setattr(files.shutil, "copyfileobj", interrupted)
    with pytest.raises(KeyboardInterrupt):
        files.fetch(source.as_uri(), tmp_path / "data" / "file.gz", files.md5sum(source))
    assert list((tmp_path / "data").iterdir()) == []
