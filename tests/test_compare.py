"""`advbridge compare`: the noise tests hand-checked, and two real tiny studies in one store compared: a study with
itself, and with one whose FGSM eps changed (cells added and removed) and whose PGD ran fewer steps (cells moved)."""

from __future__ import annotations

import json
from math import comb

import numpy as np
import pandas as pd
import pytest
from conftest import TRAINING, module_store, write_scenario
from mlflow.tracking import MlflowClient
from scipy.stats import binomtest

from bridge import open_study, run_scenario
from bridge.cli.main import main
from bridge.runner.compare import FISHER, MCNEMAR, compare, fisher_p, markdown, mcnemar_p, noise_test

N = 30
SCENARIO = f"""
name: compare-tiny
seed: 0
batch_size: {N}
data: {{dataset: digits, n_samples: {N}}}
model: {{arch: small_cnn, training: {json.dumps(TRAINING)}}}
attacks:
  - {{attack: fgsm, norm: linf, eps: 0.1, toolkit: [art, torchattacks]}}
  - {{attack: pgd, norm: linf, eps: 0.1, steps: 5, step_size: 0.025, random_start: false,
     toolkit: [art, torchattacks]}}
"""


# --- the tests of noise, by hand ---------------------------------------------------------------------------------


def test_mcnemar_is_the_exact_binomial_on_the_discordant_pairs() -> None:
    a = np.array([1, 1, 1, 1, 1, 1, 1, 0, 0, 1, 0], bool)
    b = np.array([0, 0, 0, 0, 0, 0, 1, 1, 0, 1, 0], bool)  # 6 robust only in A, 1 only in B, 3 concordant
    assert mcnemar_p(a, b) == pytest.approx(2 * (comb(7, 0) + comb(7, 1)) / 2**7)  # 0.125
    assert mcnemar_p(a[:6], b[:6]) == pytest.approx(2 / 2**6)  # 6 to 0: 0.03125
    assert mcnemar_p(a, a) == 1.0  # nothing discordant, nothing moved


def test_fisher_where_the_samples_differ_and_mcnemar_where_they_are_the_same() -> None:
    assert fisher_p(3, 3, 0, 3) == pytest.approx(2 / comb(6, 3))  # [[3, 0], [0, 3]]: 0.1
    a = pd.DataFrame({"label": [0, 1, 2, 3, 4, 5], "robust": [True] * 6})
    b = a.assign(robust=False)
    assert noise_test(a, b, "robust") == (pytest.approx(2 / 2**6), MCNEMAR)
    assert noise_test(a, b.assign(label=[5, 4, 3, 2, 1, 0]), "robust") == (pytest.approx(2 / comb(12, 6)), FISHER)
    assert noise_test(a, b.iloc[:5], "robust")[1] == FISHER  # fewer samples: not the same samples


# --- real studies ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def studies(tmp_path_factory, model_cache):
    """A, and B (FGSM at eps 0.2 instead of 0.1, PGD with 1 step instead of 5), opened from the store."""
    with module_store(tmp_path_factory, "compare") as (tmp, uri):
        path = write_scenario(tmp, SCENARIO)
        runs = {}
        for name, overrides in (("a", []), ("b", ["attacks.0.eps=0.2", "attacks.1.steps=1"])):
            runs[name] = run_scenario(path, overrides, log=lambda _: None).attrs["parent_run_id"]
        yield {name: open_study(run_id, uri) for name, run_id in runs.items()}, uri, tmp


def test_a_study_compared_with_itself_has_nothing_moved(studies) -> None:
    a = studies[0]["a"]
    c = compare(a, a)
    assert len(c.cells) == 4 and (c.cells["where"] == "both").all()
    assert not c.cells["moved"].any() and (c.cells["p_value"] == 1).all() and (c.cells["difference"] == 0).all()
    assert (c.cells["test"] == MCNEMAR).all() and (c.cells["spec_changed"] == "").all()
    assert not c.clean["moved"].any() and c.clean["difference"].iloc[0] == 0 and c.checks.empty
    assert "4 cells in both, 0 moved; 0 added; 0 removed" in markdown(c)


def test_a_changed_eps_is_cells_added_and_removed_never_merged(studies) -> None:
    a, b = studies[0]["a"], studies[0]["b"]
    c = compare(a, b)
    where = {(r.attack, r.eps, r.toolkit): r.where for r in c.cells.itertuples()}
    assert where == {
        ("fgsm", 0.1, "art"): "removed", ("fgsm", 0.1, "torchattacks"): "removed",
        ("fgsm", 0.2, "art"): "added", ("fgsm", 0.2, "torchattacks"): "added",
        ("pgd", 0.1, "art"): "both", ("pgd", 0.1, "torchattacks"): "both",
    }  # fmt: skip
    text = markdown(c)
    assert "## Added (in B only)" in text and "small_cnn · fgsm-linf eps=0.2 · art" in text
    assert "## Removed (in A only)" in text and "small_cnn · fgsm-linf eps=0.1 · torchattacks" in text


def test_fewer_pgd_steps_move_its_cells_beyond_noise(studies) -> None:
    a, b = studies[0]["a"], studies[0]["b"]
    c = compare(a, b)
    pgd = c.cells[c.cells["attack"] == "pgd"]
    assert len(pgd) == 2 and (pgd["where"] == "both").all()  # one spec field changed: the same cells, compared
    for row in pgd.itertuples():
        assert row.spec_changed == "steps 5→1" and row.test == MCNEMAR
        ra = a.per_sample.query("run_id == @row.run_id_a")["robust"].to_numpy()
        rb = b.per_sample.query("run_id == @row.run_id_b")["robust"].to_numpy()
        assert row.robust_accuracy_a == pytest.approx(ra.mean()) and row.robust_accuracy_b == pytest.approx(rb.mean())
        only_a, only_b = int((ra & ~rb).sum()), int((~ra & rb).sum())
        assert row.p_value == pytest.approx(binomtest(only_a, only_a + only_b).pvalue)
        assert row.moved and row.difference > 0.2, row  # one step of 0.025 leaves far more samples robust
    assert "2 cells in both, 2 moved; 2 added; 2 removed" in markdown(c)


def test_the_command_prints_writes_and_records_the_comparison(studies, tmp_path, capsys) -> None:
    runs, uri, _ = studies
    a, b = runs["a"].run_id, runs["b"].run_id
    out = tmp_path / "diff.md"
    assert main(["compare", a, b, "-o", str(out), "--uri", uri]) == 0
    printed = capsys.readouterr().out
    assert out.read_text().strip() == printed.strip() and "McNemar's exact test" in printed
    assert "alpha = 0.05" in printed
    client = MlflowClient(uri)
    assert {f.path for f in client.list_artifacts(b, "compare")} == {f"compare/{a}.md", f"compare/{a}.csv"}
    cells = pd.read_csv(client.download_artifacts(b, f"compare/{a}.csv"))
    assert sorted(cells["where"]) == ["added", "added", "both", "both", "removed", "removed"]
    assert main(["compare", "latest", a, "--alpha", "0.01"]) == 0  # latest: B; the store of $MLFLOW_TRACKING_URI
    assert "alpha = 0.01" in capsys.readouterr().out
    assert {f.path for f in client.list_artifacts(a, "compare")} == {f"compare/{b}.md", f"compare/{b}.csv"}


@pytest.mark.parametrize(
    "args, says",
    [
        (["no-such-run", "latest"], "no-such-run: no such run in"),
        (["latest", "latest", "-o", "/no/such/x.md"], "-o /no/such/x.md: /no/such is not a folder"),
        (["latest", "latest", "--alpha", "1.5"], "--alpha 1.5: a significance level is between 0 and 1"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(studies, capsys, args: list[str], says: str) -> None:
    assert main(["compare", *args]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and err.startswith(f"advbridge: error: {says}")
