"""A corpus of bad scenarios and `--set` values: each one gets one line naming the file and the key, exit 2, and an
unchanged store, from `run` and from `validate` alike; crafted files never run their payload."""

from __future__ import annotations

import hashlib
import importlib
import pickle
import re
from pathlib import Path

import pytest
from crafted import Payload

from bridge.cli.main import main
from bridge.scenario.reading import MAX_BYTES, MAX_NODES

GOOD = """\
name: bad-input
data: {n_samples: 8}
attacks:
  - {attack: fgsm, norm: linf, eps: 0.1, toolkit: art}
"""
BOMB = """\
a: &a [x, x, x, x, x, x, x, x, x, x]
b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]
c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]
d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]
e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]
f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]
g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f, *f]
h: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g, *g]
"""


def with_model(model: str) -> str:
    return GOOD + f"model: {model}\n"


# id -> (scenario text (bytes for a binary file; {tmp} is the test's folder), --set values, what the line names)
CASES: dict[str, tuple[str | bytes, list[str], str]] = {
    # reading the file
    "binary file": (b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe", [], r"not a text file: byte 0x89 at offset 0"),
    "too large": ("#" * (MAX_BYTES + 1), [], rf"a scenario file is at most {MAX_BYTES} bytes"),
    "invalid yaml": (GOOD + "seed: [1,\n", [], r"not valid YAML at line \d+"),
    "not a mapping": ("- name: x\n", [], r"\(top level\): expected a mapping"),
    "duplicate key": (GOOD + "seed: 1\nseed: 2\n", [], r"duplicate key 'seed' at lines 5 and 6"),
    "duplicate nested key": (GOOD.replace("eps: 0.1,", "eps: 0.1, eps: 0.2,"), [], r"duplicate key 'eps' at line"),
    "alias bomb under seed": (BOMB + GOOD + "seed: *h\n", [], rf"expands to more than {MAX_NODES} values"),
    "alias bomb in options": (
        BOMB + GOOD.replace("toolkit: art}", "toolkit: art, options: {x: *h}}"),
        [],
        r"expands to more than",
    ),
    "recursive alias": (GOOD + "seed: &s [*s]\n", [], r"expands to more than"),
    "nested too deeply": (GOOD + "seed: " + "[" * 5000 + "]" * 5000 + "\n", [], r"nested too deeply"),
    # values
    "division by zero": (GOOD.replace("eps: 0.1", "eps: 8/0"), [], r"attacks\[0\]\.eps\[0\]: '8/0' divides by zero"),
    "pgd steps 0": (
        GOOD.replace("fgsm", "pgd").replace("eps: 0.1,", "eps: 0.1, steps: 0,"),
        [],
        r"attacks\[0\]\.steps: steps must be >= 1, got 0",
    ),
    "nan eps": (GOOD.replace("eps: 0.1", "eps: .nan"), [], r"attacks\[0\]\.eps: NaN is not a value"),
    "infinite eps": (GOOD.replace("eps: 0.1", "eps: .inf"), [], r"attacks\[0\]\.eps\[0\]: Input should be a finite"),
    "nan step size": (
        GOOD.replace("fgsm", "pgd").replace("eps: 0.1,", "eps: 0.1, step_size: .nan,"),
        [],
        r"attacks\[0\]\.step_size: NaN is not a value",
    ),
    "nan in options": (
        GOOD.replace("toolkit: art}", "toolkit: art, options: {minimal: .nan}}"),
        [],
        r"attacks\[0\]\.options\.minimal: NaN",
    ),
    "infinite batch size": (GOOD + "batch_size: .inf\n", [], r"batch_size: Input should be a (valid|finite)"),
    "more samples than the split": (
        GOOD.replace("n_samples: 8", "n_samples: 5000"),
        [],
        r"data\.n_samples: 5000 is more than the 540 samples",
    ),
    "empty tracking uri": (GOOD + "tracking: {uri: ''}\n", [], r"tracking\.uri: String should have at least 1 char"),
    "empty name": (GOOD.replace("name: bad-input", "name: ''"), [], r"name: String should have at least 1 char"),
    "native option of the wrong type": (
        GOOD.replace("attack: fgsm,", "attack: native, native: ProjectedGradientDescent, options: {max_iter: ten},"),
        [],
        r"attacks\[0\]\.options\.max_iter: art ProjectedGradientDescent: max_iter takes integer, not str",
    ),
    # names
    "scenario name ..": (GOOD.replace("name: bad-input", "name: '..'"), [], r"name: '\.\.' is not a name"),
    "scenario name with a separator": (GOOD.replace("bad-input", "a/b"), [], r"name: 'a/b' is not a name"),
    "scenario name of 1000 characters": (GOOD.replace("bad-input", "x" * 1000), [], r"name: 'x+\.\.\.' is not a name"),
    "experiment outside the store": (
        GOOD + "tracking: {experiment: ../../x}\n",
        [],
        r"tracking\.experiment: '\.\./\.\./x' is not a name",
    ),
    "absolute experiment": (GOOD + "tracking: {experiment: /tmp/x}\n", [], r"tracking\.experiment: '/tmp/x' is not"),
    "model name with ..": (with_model("{name: ../x}"), [], r"model\.name: '\.\./x' is not a name"),
    # what only this machine can tell
    "no such cuda device": (GOOD + "device: cuda:99\n", [], r"device: cuda:99: this machine has"),
    "unknown tracking scheme": (GOOD + "tracking: {uri: 'foo://bar'}\n", [], r"tracking\.uri: foo://bar: not a"),
    "tracking file not sqlite": (
        GOOD + "tracking: {uri: 'sqlite:///{tmp}/notes.txt'}\n",
        [],
        r"tracking\.uri: .*notes\.txt is not a SQLite database",
    ),
    "tracking server down": (
        GOOD + "tracking: {uri: 'http://127.0.0.1:9'}\n",
        [],
        r"tracking\.uri: http://127\.0\.0\.1:9: the tracking server does not answer",
    ),
    "missing checkpoint": (with_model("{checkpoint: '{tmp}/none.pt'}"), [], r"model: checkpoint .*none\.pt not found"),
    "malicious checkpoint": (
        with_model("{checkpoint: '{tmp}/evil.pt'}"),
        [],
        r"model: checkpoint .*evil\.pt holds pickled objects",
    ),
    "missing factory module": (
        with_model("{factory: 'no_such_module:net'}"),
        [],
        r"model: factory no_such_module:net: module no_such_module not found",
    ),
    "not torchscript": (
        with_model("{torchscript: '{tmp}/notes.txt'}"),
        [],
        r"model: torchscript file .*notes\.txt could not be loaded",
    ),
    "missing keras file": (with_model("{keras: '{tmp}/none.keras'}"), [], r"model: keras file .*none\.keras not found"),
    "unknown mlflow model": (
        with_model("{mlflow: 'models:/no-such-model/1'}"),
        [],
        r"model: mlflow model models:/no-such-model/1",
    ),
    "data not here": (
        GOOD.replace("{n_samples: 8}", "{dataset: mnist, root: '{tmp}/nothing'}"),
        [],
        r"data: mnist: .*nothing has no train-images-idx3-ubyte\.gz",
    ),
    # --set values
    "set value yaml cannot parse": (GOOD, ["seed=[1,"], r"--set seed: not valid YAML"),
    "set nan": (GOOD, ["attacks.0.eps=.nan"], r"attacks\[0\]\.eps: NaN is not a value"),
    "set without =": (GOOD, ["seed"], r"--set seed: expected key\.path=value"),
    "set a missing index": (GOOD, ["attacks.5.eps=1"], r"--set attacks\.5\.eps=1: '5' is not an index of attacks"),
    "set a duplicate key": (GOOD, ["data={n_samples: 1, n_samples: 2}"], r"--set data: duplicate key 'n_samples'"),
    "set an alias bomb": (GOOD, ["seed=" + BOMB.replace("\n", ", ").join("{}")], r"--set seed: the document expands"),
}


def snapshot(root: Path) -> dict[str, str]:
    """Every file under `root` with the sha256 of its bytes."""
    files = [p for p in root.rglob("*") if p.is_file()]
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


@pytest.fixture(scope="module")
def existing_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store with one experiment in it, as a user has after a first study."""
    from bridge.engine.tracking import setup

    folder = tmp_path_factory.mktemp("store")
    setup(f"sqlite:///{folder / 'mlflow.db'}", "earlier")
    return folder


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_one_line_exit_2_and_nothing_written(
    case: str, tmp_path: Path, existing_store: Path, model_cache: str, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    text, overrides, expected = CASES[case]
    marker = tmp_path / "ran.txt"
    (tmp_path / "notes.txt").write_text("not a model, not a database")
    (tmp_path / "evil.pt").write_bytes(pickle.dumps(Payload(marker)))
    path = tmp_path / "scenario.yaml"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text.replace("{tmp}", str(tmp_path)))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{existing_store / 'mlflow.db'}")
    before, cache_before = snapshot(existing_store), snapshot(Path(model_cache))
    sets = [a for value in overrides for a in ("--set", value)]
    for command in ("validate", "run"):
        code = main([command, str(path), *sets])
        out, err = capsys.readouterr()
        lines = err.strip().splitlines()
        assert code == 2, f"{command}: exit {code}: {err}"
        assert not out and len(lines) == 1, f"{command} printed {out!r} and {err!r}"
        assert lines[0].startswith(f"advbridge: error: {path}: "), lines[0]
        assert re.search(expected, lines[0]), f"{command}: {lines[0]}"
    assert snapshot(existing_store) == before and snapshot(Path(model_cache)) == cache_before
    assert not marker.exists()


def test_a_bad_scenario_creates_no_new_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    """A store that does not exist yet is not created by a run that is refused (nor by aggregate on it)."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'new' / 'mlflow.db'}")
    path = tmp_path / "scenario.yaml"
    path.write_text(with_model("{checkpoint: missing.pt}"))
    assert main(["run", str(path)]) == 2
    assert main(["aggregate", "0123abcd"]) == 2
    assert "there is no tracking store at" in capsys.readouterr().err
    assert not (tmp_path / "new").exists()


def test_a_defect_is_one_line_with_its_traceback_in_a_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    cli = importlib.import_module("bridge.cli.main")  # the package's `main` is the function

    def broken(args):
        raise RuntimeError("something the bridge did not expect\nsecond line")

    monkeypatch.setenv("ADVBRIDGE_CACHE", str(tmp_path))
    monkeypatch.setattr(cli, "cmd_validate", broken)
    assert cli.main(["validate", "x.yaml"]) == 1
    (line,) = capsys.readouterr().err.strip().splitlines()
    found = re.fullmatch(
        r"advbridge: internal error: RuntimeError: something the bridge did not expect "
        r"\(traceback: (.+)\)",
        line,
    )
    assert found, line
    written = Path(found[1]).read_text()
    assert written.startswith("advbridge ") and "Traceback" in written and "second line" in written
    assert Path(found[1]).parent == tmp_path / "errors"


def test_an_interrupt_is_one_line_and_exit_130(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    cli = importlib.import_module("bridge.cli.main")  # the package's `main` is the function

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "cmd_validate", interrupted)
    assert cli.main(["validate", "x.yaml"]) == 130
    assert capsys.readouterr().err == "advbridge: interrupted\n"


def test_artifacts_never_land_outside_the_store_even_through_a_link(tmp_path: Path) -> None:
    """The experiment's artifact folder is checked after resolution: a link in the artifact root is not followed."""
    from bridge.core.errors import ScenarioError
    from bridge.engine.tracking import setup

    (tmp_path / "store" / "artifacts").mkdir(parents=True)
    (tmp_path / "store" / "artifacts" / "linked").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    uri = f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"
    with pytest.raises(ScenarioError, match=r"tracking.experiment: 'linked' would put its artifacts outside"):
        setup(uri, "linked")
    assert setup(uri, "inside")  # a plain name lands in the root


@pytest.mark.parametrize("command", [["aggregate", "0123abcd"], ["ui"]])
def test_a_bad_uri_on_the_command_line_is_one_line(command: list[str], capsys) -> None:
    assert main([*command, "--uri", "foo://bar"]) == 2
    assert capsys.readouterr().err == (
        "advbridge: error: --uri: foo://bar: not a tracking store URI; allowed: sqlite:///path/to/mlflow.db, "
        "http(s)://server, or a postgresql/mysql/mssql database URI\n"
    )
