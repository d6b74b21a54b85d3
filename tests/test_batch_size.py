"""`batch_size: auto`: the scenario key, the probe's search on a model built to run out of memory past N samples,
the cache written once and read after, the CPU default, and what a study records."""

from __future__ import annotations

import json
import math

import pytest
import torch
from conftest import TRAINING, write_scenario
from mlflow.tracking import MlflowClient
from torch import nn

from bridge.attacks.adapter import get_adapter
from bridge.attacks.spec import AttackSpec, resolve_attack
from bridge.cli.main import main
from bridge.engine import batch
from bridge.engine.batch import (
    CACHE_FILE,
    DEFAULT,
    attack_fits,
    cached_batch,
    choose,
    largest_fitting,
    probe_key,
    structure,
)
from bridge.models.shared import SharedModel
from bridge.runner.study import run_scenario
from bridge.studies.evasion.cell import attack, measure


class Tripping(nn.Module):
    """A linear classifier on 8x8 images that runs out of memory, as CUDA reports it, past `limit` samples a pass."""

    def __init__(self, limit: int):
        super().__init__()
        self.limit = limit
        self.linear = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if len(x) > self.limit:
            raise torch.OutOfMemoryError(f"{len(x)} samples do not fit; {self.limit} do")
        return self.linear(x.flatten(1))


def tripping_model(limit: int) -> SharedModel:
    torch.manual_seed(0)
    return SharedModel(Tripping(limit), (1, 8, 8), 10, device="cpu")


def samples(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    return torch.rand(n, 1, 8, 8, generator=gen), torch.randint(0, 10, (n,), generator=gen)


def pgd(toolkit: str, batch_size: int | str = "auto", **fields) -> AttackSpec:
    return resolve_attack({"attack": "pgd", "norm": "linf", "eps": 0.1, "steps": 5, "toolkit": toolkit,
                           "batch_size": batch_size, **fields})  # fmt: skip


# --- the search --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("limit", [0, 1, 2, 3, 5, 64, 100, 127, 128, 129, 1000])
def test_the_search_finds_the_largest_batch_that_fits(limit: int) -> None:
    tried: list[int] = []

    def fits(b: int) -> bool:
        tried.append(b)
        return b <= limit

    assert largest_fitting(fits, 4096) == (limit, limit + 1)
    assert len(tried) <= 2 * math.ceil(math.log2(limit + 2)) + 1  # doubling, then bisecting: no linear scan
    assert max(tried) <= max(1, 2 * limit)  # never far past the limit


@pytest.mark.parametrize(("limit", "cap"), [(1000, 300), (300, 300), (5, 1), (7, 8)])
def test_the_search_stops_at_the_cap(limit: int, cap: int) -> None:
    tried: list[int] = []

    def fits(b: int) -> bool:
        tried.append(b)
        return b <= limit

    found = largest_fitting(fits, cap)
    assert found == ((cap, None) if limit >= cap else (limit, limit + 1))
    assert max(tried) <= cap


def test_the_batch_keeps_a_margin_below_a_limit_found_and_none_below_the_cap() -> None:
    assert choose(1000, 1001, 5000) == 800  # MARGIN of the largest that fit
    assert choose(1000, 1001, 500) == 500  # never more than the samples
    assert choose(1, 2, 500) == 1  # at least one
    assert choose(300, None, 300) == 300  # no limit below the cap: all the samples at once
    assert choose(300, None, 40) == 40


# --- the real attack as the probe runs it ------------------------------------------------------------------------


@pytest.mark.parametrize("toolkit", ["torchattacks", "art"])
@pytest.mark.parametrize("limit", [1, 7, 33])
def test_the_probe_finds_where_the_model_runs_out_of_memory(toolkit: str, limit: int) -> None:
    x, y = samples(48)
    fits = attack_fits(pgd(toolkit), tripping_model(limit), x, y, None)
    assert largest_fitting(fits, len(y)) == (limit, limit + 1)


def test_a_model_that_fits_every_batch_is_probed_up_to_its_samples() -> None:
    x, y = samples(48)
    assert largest_fitting(attack_fits(pgd("torchattacks"), tripping_model(10**6), x, y, None), 48) == (48, None)


def test_the_probe_stops_the_attack_after_its_first_passes() -> None:
    """PGD-100 would take 100 forward passes: the probe sees PROBE_PASSES, then stops it (a 101-pass attack would
    raise the counter past it), and leaves the model as it found it (modes, requires_grad, no hook)."""
    model = tripping_model(10**6)
    model.train()
    passes: list[int] = []
    model.net.register_forward_hook(lambda _m, inputs, _out: passes.append(len(inputs[0])))
    x, y = samples(16)
    assert attack_fits(pgd("torchattacks", steps=100), model, x, y, None)(16)
    assert passes == [16] * batch.PROBE_PASSES
    assert model.training and all(p.requires_grad for p in model.parameters())
    assert len(model.net._forward_pre_hooks) == 0


def test_an_error_other_than_memory_is_not_taken_for_a_limit() -> None:
    def broken() -> None:
        raise RuntimeError("a toolkit's own failure")

    cpu = torch.device("cpu")
    with pytest.raises(RuntimeError, match="own failure"):
        batch.runs_in_memory(broken, cpu)
    assert batch.runs_in_memory(lambda: None, cpu)


# --- the cache ---------------------------------------------------------------------------------------------------


def test_the_probe_is_cached_once_and_read_after(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ADVBRIDGE_CACHE", str(tmp_path))
    tried: list[int] = []

    def fits(b: int) -> bool:
        tried.append(b)
        return b <= 100

    def never(b: int) -> bool:
        raise AssertionError("probed again")

    what = {"network": "n", "device": "gpu"}
    assert cached_batch(what, 1000, fits) == 80
    written = (tmp_path / CACHE_FILE).read_bytes()
    (entry,) = json.loads(written).values()
    assert (entry["largest"], entry["failed"], entry["what"]) == (100, 101, what)
    assert cached_batch(what, 1000, never) == 80  # the second resolution reads the file
    assert cached_batch(what, 50, never) == 50  # a limit found holds for any number of samples
    assert (tmp_path / CACHE_FILE).read_bytes() == written
    tried.clear()
    assert cached_batch({**what, "device": "other"}, 1000, fits) == 80 and tried  # another key: probed
    assert len(json.loads((tmp_path / CACHE_FILE).read_text())) == 2  # both entries kept


def test_a_probe_that_reached_its_cap_is_done_again_for_more_samples(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("ADVBRIDGE_CACHE", str(tmp_path))
    what = {"network": "n"}
    assert cached_batch(what, 64, lambda b: b <= 100) == 64  # no limit below 64: not known above it
    assert cached_batch(what, 32, lambda b: pytest.fail("probed again")) == 32
    assert cached_batch(what, 1000, lambda b: b <= 100) == 80


def test_nothing_fits_is_an_out_of_memory_error_and_not_cached(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("ADVBRIDGE_CACHE", str(tmp_path))
    with pytest.raises(torch.OutOfMemoryError, match="not even a batch of 1 fits on gpu"):
        cached_batch({"device": "gpu"}, 64, lambda b: False)
    assert not (tmp_path / CACHE_FILE).exists()


def test_the_key_is_the_networks_structure_and_the_attack_but_not_its_budget() -> None:
    a, b = tripping_model(1), tripping_model(1)
    with torch.no_grad():
        b.net.linear.weight.add_(1.0)  # other weights, the same memory
    assert structure(a.net) == structure(b.net)
    assert structure(a.net) != structure(nn.Sequential(nn.Flatten(), nn.Linear(64, 10)))
    assert structure(a.net) != structure(Tripping(1).to(torch.float64))
    key = probe_key(pgd("art"), a, "gpu")
    assert probe_key(pgd("art", eps=0.3, seed=4), b, "gpu") == key  # a grid's budgets share one probe
    assert probe_key(pgd("art", batch_size=64), a, "gpu") == key
    assert probe_key(pgd("art", restarts=5, random_start=True), a, "gpu") != key
    assert probe_key(pgd("torchattacks"), a, "gpu") != key
    assert probe_key(pgd("art"), a, "other gpu") != key


# --- on a CPU ----------------------------------------------------------------------------------------------------


def test_auto_on_a_cpu_runs_the_fixed_default_exactly_as_written(tmp_path, monkeypatch) -> None:
    """ART takes the batch size as an argument: `auto` is translated again for the number. The model runs out of
    memory past 150 samples, which a probe would find: on a CPU nothing is probed."""
    monkeypatch.setenv("ADVBRIDGE_CACHE", str(tmp_path))
    model = tripping_model(150)
    x, y = samples(200)
    clean = model.predict(x, 100)
    runs = {}
    for size in ("auto", DEFAULT, 64):
        spec = pgd("art", size, random_start=True)
        runs[size] = measure(spec, get_adapter("art").translate(spec, 10), model, x, y, clean)
    assert runs["auto"].metrics["batch_size"] == DEFAULT and runs[64].metrics["batch_size"] == 64
    assert torch.equal(runs["auto"].x_adv, runs[DEFAULT].x_adv)
    assert not (tmp_path / CACHE_FILE).exists()
    with pytest.raises(torch.OutOfMemoryError):  # the model does trip past 150 samples
        attack(pgd("art", 200), get_adapter("art").translate(pgd("art", 200), 10), model, x, y, None)


# --- the scenario and the study ----------------------------------------------------------------------------------

GOOD = """\
name: auto
data: {n_samples: 8}
attacks:
  - {attack: fgsm, norm: linf, eps: 0.1, toolkit: art}
"""


@pytest.mark.parametrize("value", ["0", "-3", "big", "1.5", "true", "null", "'128'"])
def test_a_bad_batch_size_is_one_line_naming_the_file_the_key_and_what_is_allowed(tmp_path, capsys, value) -> None:
    path = write_scenario(tmp_path, GOOD + f"batch_size: {value}\n")
    assert main(["validate", str(path)]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"advbridge: error: {path}: batch_size: ")
    assert "a positive integer or auto (got " in line


@pytest.mark.parametrize("value", ["auto", "64"])
def test_auto_and_a_positive_integer_are_valid(tmp_path, capsys, value) -> None:
    assert main(["validate", str(write_scenario(tmp_path, GOOD + f"batch_size: {value}\n"))]) == 0


STUDY = {
    "name": "auto-batch",
    "batch_size": "auto",
    "data": {"n_samples": 8},
    "model": {"arch": "small_cnn", "training": TRAINING},
    "attacks": [{"attack": "pgd", "norm": "linf", "eps": 0.1, "steps": 2, "toolkit": ["art", "torchattacks"]}],
}


def test_a_study_records_the_batch_each_cell_ran_in_and_resumes_with_auto_in_its_keys(store, model_cache) -> None:
    first = run_scenario(STUDY, log=lambda _: None)
    client = MlflowClient(store)
    assert client.get_run(first.attrs["parent_run_id"]).data.params["batch_size"] == "auto"
    assert (first["status"] == "ok").all() and len(first) == 2
    assert [client.get_run(run_id).data.params["batch_size"] for run_id in first["run_id"]] == [str(DEFAULT)] * 2
    again = run_scenario(STUDY, log=lambda _: None, resume=first.attrs["parent_run_id"])
    assert (again.attrs["ran"], again.attrs["reused"]) == (0, first.attrs["ran"])


@pytest.mark.slow
def test_a_transfer_of_an_auto_cell_is_judged_and_keeps_the_plans_auto(store, model_cache) -> None:
    """A transfer runs no attack of its own: its victim predicts in its recipe's batch, and its params keep `auto`."""
    scenario = {**STUDY, "defences": ["none", {"kind": "feature_squeezing", "bit_depth": 3, "gradient": "bpda"}],
                "transfer": True}  # fmt: skip
    table = run_scenario(scenario, log=lambda _: None)
    client = MlflowClient(store)
    assert (table["status"] == "ok").all() and list(table["evaluation"]).count("transfer") == 2
    for row in table.itertuples():
        params = client.get_run(row.run_id).data.params
        assert params["batch_size"] == (str(DEFAULT) if row.evaluation == "direct" else "auto")
