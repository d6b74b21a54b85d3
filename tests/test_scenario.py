"""Scenario files: grid expansion, bridge defaults, overrides, and one-line errors for bad input."""

from __future__ import annotations

import re

import pytest
from conftest import write_scenario

from bridge.scenario.load import ScenarioError, load, load_raw

GOOD = """
name: tiny
data: {dataset: digits, n_samples: 20}
attacks:
  - {attack: pgd, norm: linf, eps: [0.05, "8/255"], steps: 5, step_size: 0.01, random_start: false,
     toolkit: [art, foolbox, torchattacks]}
  - {attack: bim, norm: l2, eps: 1.0}
  - {attack: cw, norm: l2}
"""


def test_grid_expands_eps_times_toolkits_with_explicit_defaults(tmp_path) -> None:
    plan = load(write_scenario(tmp_path, GOOD))
    specs = [c.spec for c in plan.cells]
    assert len(specs) == 2 * 3 + 3 + 3
    assert [s.eps for s in specs[:6]] == [0.05] * 3 + [pytest.approx(8 / 255)] * 3
    bim = specs[6]
    assert (bim.steps, bim.step_size) == (10, pytest.approx(0.1))  # eps / steps, passed to every toolkit
    cw = specs[-1]
    assert (cw.steps, cw.binary_search_steps, cw.initial_const, cw.loss) == (100, 1, 1.0, "margin")
    # bim l2 exists in Foolbox only: the other two are reported, not dropped
    unsupported = {c.spec.toolkit: c.unsupported for c in plan.cells if c.unsupported}
    assert set(unsupported) == {"art", "torchattacks"}
    assert "bim" in unsupported["art"] and "l2" in unsupported["art"]
    translated = plan.cells[0].translation
    assert translated.native and translated.kwargs  # every supported cell is translated before running


def test_overrides_apply_yaml_values_by_key_path(tmp_path) -> None:
    plan = load(write_scenario(tmp_path, GOOD), ["attacks.0.steps=7", "data.n_samples=11", "seed=3"])
    assert plan.cells[0].spec.steps == 7
    assert plan.scenario.data.n_samples == 11
    assert plan.cells[0].spec.seed == 3  # the scenario seed reaches every cell


def test_python_dict_is_validated_like_a_file() -> None:
    with pytest.raises(ScenarioError, match=r"^<scenario dict>: no study to run: give one of attacks, "):
        load_raw({"name": "x"})


BAD = [
    (
        "nme: x\nattacks: []",
        r"nme: unknown key; allowed: name, seed, device, precision, batch_size, data, model, models, tracking, "
        r"defences, executor, ray, attacks, checks",
    ),
    (
        "name: x\nattacks:\n  - {attack: pgd, norm: linf, eps: 0.1, stpes: 3}",
        r"attacks\[0\]\.stpes: unknown key; allowed: steps, step_size, .*attack, toolkit, norm, eps",
    ),
    ("name: x\ndata: {datset: digits}\nattacks: []", r"data\.datset: unknown key; allowed: dataset, split, n_samples"),
    ("name: x\nattacks:\n  - {attack: pgd, norm: linf, eps: 0.1, steps: ten}", r"attacks\[0\]\.steps: .*integer"),
    ("name: x\nattacks:\n  - {attack: pgdd, norm: linf, eps: 0.1}", r"attacks\[0\]\.attack: Input should be 'fgsm'"),
    (
        "name: x\nattacks:\n  - {attack: pgd, norm: linf, eps: 0.1, toolkit: [art, cleverhans]}",
        r"attacks\[0\]\.toolkit\[1\]: Input should be 'art', 'foolbox' or 'torchattacks'",
    ),
    (
        "name: x\nattacks:\n  - {attack: fgsm, norm: l0, eps: 0.1}",
        r"attacks\[0\]\.norm: fgsm is defined for norms linf, l2, l1",
    ),
    (
        "name: x\nattacks:\n  - {attack: pgd, norm: linf, eps: 0.1, decay: 0.5}",
        r"attacks\[0\]\.decay: 'decay' does not",
    ),
    (
        "name: x\nattacks:\n  - {attack: pgd, norm: linf}",
        r"attacks\[0\]\.eps: pgd is a fixed-budget attack: eps is required",
    ),
    (
        "name: x\nattacks:\n  - {attack: pgd, norm: linf, eps: 0.1, restarts: 3, random_start: false}",
        r"attacks\[0\]\.restarts: restarts > 1 needs random_start: true",
    ),
    (
        "name: x\nattacks:\n  - {attack: pgd, norm: linf, eps: 0.1, toolkit: art, options: {nb_iter: 3}}",
        r"attacks\[0\]\.options: art ProjectedGradientDescent has no parameter nb_iter; it takes: .*max_iter",
    ),
    (
        "name: x\nattacks:\n  - {attack: deepfool, norm: linf, toolkit: torchattacks}",
        r"attacks\[0\]: no listed toolkit can run deepfool linf: torchattacks has no deepfool for norm linf",
    ),
    ("name: x\ndevice: gpu\nattacks: []", r"device: String should match pattern"),
    ("name: x\nattacks: [", r"not valid YAML at line \d+, column \d+"),
    ("- a\n- b", r"\(top level\): expected a mapping of scenario keys"),
]


@pytest.mark.parametrize(("text", "message"), BAD, ids=[m[:40] for _, m in BAD])
def test_bad_files_give_one_line_naming_file_and_key(tmp_path, text: str, message: str) -> None:
    path = write_scenario(tmp_path, text, "bad.yaml")
    with pytest.raises(ScenarioError) as info:
        load(path)
    text = str(info.value)
    assert "\n" not in text
    assert text.startswith(f"{path}: ")
    assert re.search(message, text), text


def test_missing_file_and_bad_override(tmp_path) -> None:
    with pytest.raises(ScenarioError, match=r"nope\.yaml: cannot read the scenario file"):
        load(tmp_path / "nope.yaml")
    path = write_scenario(tmp_path, GOOD)
    with pytest.raises(ScenarioError, match=r"--set attacks\.9\.steps=3: '9' is not an index of attacks"):
        load(path, ["attacks.9.steps=3"])
    with pytest.raises(ScenarioError, match=r"--set steps: expected key\.path=value"):
        load(path, ["steps"])
