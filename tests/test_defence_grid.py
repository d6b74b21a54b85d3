"""The defences axis of a scenario: validation, the grid of defended models, transfer rows, the trade-off on the
parent run, ART's model-level metrics and the detector study, all read back from a real MLflow store."""

from __future__ import annotations

import io

import mlflow
import pandas as pd
import pytest

from bridge.runner.study import run_scenario
from bridge.scenario.load import ScenarioError, load_raw
from tests.conftest import TRAINING

ATTACKS = [
    {"attack": "fgsm", "norm": "linf", "eps": [0.1]},
    {"attack": "pgd", "norm": "linf", "eps": [0.1], "steps": 10, "step_size": 0.02, "random_start": False},
]


def scenario(**fields) -> dict:
    return {"name": "grid", "attacks": ATTACKS, **fields}


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"defences": ["none", {"kind": "jpeg", "gradient": "exact"}]},
         r"defences\[1\]: jpeg is not differentiable in torch, so it has no exact gradient; use gradient: bpda"),
        ({"defences": [{"kind": "blur"}]},
         r"defences\[0\]: defence kind must be none or one of feature_squeezing.*label_smoothing.*; got 'blur'"),
        ({"defences": ["none", {"kind": "mixup"}]}, r"defences\[1\]: mixup: mixup needs value: alpha"),
        ({"defences": [{"kind": "label_smoothing", "value": 0.1}], "model": {"torchscript": "m.pt"}},
         r"defences\[0\]: label_smoothing trains the model, but model m is not trained by the bridge"),
        ({"defences": [{"kind": "jpeg", "gradient": "bpda"}], "model": {"framework": "keras"}},
         r"defences\[0\]: defences apply to PyTorch models; small_cnn-keras is a keras model"),
        ({"defences": ["none", {"kind": "label_smoothing", "value": 0.1}], "transfer": True},
         "transfer: defences evaluates preprocessing defences"),
        ({"transfer": "models"}, "transfer: models evaluates each cell's examples on the study's other models"),
        ({"transfer": ["models", "weights"]}, r"transfer\[1\]: Input should be 'defences' or 'models'"),
        ({"defences": ["none", {"kind": "jpeg", "gradient": "bpda"}, {"kind": "jpeg", "gradient": "bpda"}]},
         "defences need distinct names"),
        ({"detector": {"attack": "pgd", "norm": "linf", "eps": 0.1, "train_toolkit": "art"},
          "attacks": [{**ATTACKS[1], "toolkit": "foolbox"}]}, "detector: no art cell of pgd"),
        ({"defences": [{"kind": "adversarial_training", "method": "pgd_at",
                        "attack": {"attack": "cw", "norm": "l2", "toolkit": "art"}}]},
         r"defences\[0\]: adversarial_training on model small_cnn: .*"),
    ],
)  # fmt: skip
def test_defence_errors_are_one_line(fields: dict, message: str) -> None:
    with pytest.raises(ScenarioError, match=message) as info:
        load_raw(scenario(**fields))
    assert "\n" not in str(info.value)


def _artifact(run_id: str, path: str) -> pd.DataFrame:
    return pd.read_csv(io.StringIO(mlflow.artifacts.load_text(f"runs:/{run_id}/{path}")))


@pytest.mark.slow  # a whole scenario: 4 defended models x 2 attacks x 3 toolkits, transfer, robustness, detector
def test_defence_grid_end_to_end(store: str, model_cache: str) -> None:
    raw = scenario(
        seed=0, device="cpu", batch_size=60,
        data={"dataset": "digits", "n_samples": 60},
        model={"arch": "small_cnn", "training": TRAINING},
        defences=["none", {"kind": "feature_squeezing", "bit_depth": 3, "gradient": "bpda"},
                  {"kind": "feature_squeezing", "name": "squeeze-exact", "bit_depth": 3, "gradient": "exact"},
                  {"kind": "label_smoothing", "value": 0.1}],
        transfer=True,
        robustness={"clever": {"n_samples": 2, "nb_batches": 10, "batch_size": 5},
                    "empirical_robustness": {"eps": 0.3, "eps_step": 0.01}},
        detector={"attack": "pgd", "norm": "linf", "eps": 0.1, "train_toolkit": "torchattacks", "epochs": 5},
    )  # fmt: skip
    table = run_scenario(raw, progress=False, log=lambda _: None)
    direct = table[table["evaluation"] == "direct"]
    assert (direct["status"] == "ok").all() and len(direct) == 4 * 2 * 3
    assert set(direct["model"]) == {"small_cnn", "small_cnn/squeeze-3bit", "small_cnn/squeeze-exact",
                                    "small_cnn/label_smoothing-0.1"}  # fmt: skip
    # Every toolkit attacked the defended models: their counters moved (one backward per PGD step).
    pgd = direct[(direct["attack"] == "pgd") & (direct["defence"] == "squeeze-3bit")]
    assert set(pgd["toolkit"]) == {"art", "foolbox", "torchattacks"} and (pgd["backward_calls"] == 10).all()
    robust = direct[direct["attack"] == "pgd"].groupby("defence")["robust_accuracy"]
    assert robust.nunique().eq(1).all()  # deterministic PGD: one number per defended model, whatever the toolkit
    robust = robust.first()
    # BPDA attacks the squeezed model as well as the undefended one; the exact gradient (zero) does nothing.
    assert robust["squeeze-3bit"] <= robust["none"] + 0.05
    assert robust["squeeze-exact"] > robust["squeeze-3bit"] + 0.3
    checks = pd.DataFrame(table.attrs["checks"]).set_index(["model", "name"])["status"]
    assert checks[("small_cnn/squeeze-exact", "gradients_not_vanishing")] == "failed"
    assert checks[("small_cnn/squeeze-3bit", "gradients_not_vanishing")] == "passed"
    # The undefended model's examples beat every direct attack on squeeze-exact: flagged; BPDA's are as strong.
    assert checks[("small_cnn/squeeze-exact", "direct_beats_transfer")] == "failed"
    assert checks[("small_cnn/squeeze-3bit", "direct_beats_transfer")] == "passed"
    assert checks[("small_cnn", "direct_beats_transfer")] == "skipped"
    # Non-adaptive rows: the undefended model's examples judged by each preprocessing-defended model.
    transfer = table[table["evaluation"] == "transfer"]
    assert set(transfer["defence"]) == {"squeeze-3bit", "squeeze-exact"} and len(transfer) == 2 * 2 * 3
    assert transfer["forward_calls"].isna().all()

    run_id = table.attrs["parent_run_id"]
    tradeoff = _artifact(run_id, "tradeoff.csv").set_index("defence")
    assert set(tradeoff.index) == {"none", "squeeze-3bit", "squeeze-exact", "label_smoothing-0.1"}
    worst = pd.concat([direct, transfer]).groupby("defence")["robust_accuracy"].min()
    for defence, row in tradeoff.iterrows():  # the worst case over cells is at most the weakest cell
        assert row["robust_accuracy_worst_case"] <= worst[defence] + 1e-9
        assert 0.5 < row["clean_accuracy"] <= 1.0
    assert tradeoff.loc["squeeze-exact", "gradient"] == "exact"
    artifacts = {a.path for a in mlflow.artifacts.list_artifacts(run_id=run_id, artifact_path="plots")}
    assert "plots/tradeoff.png" in artifacts
    params = mlflow.get_run(run_id).data.params
    assert params["defence.small_cnn/squeeze-3bit.gradient"] == "bpda"
    assert params["defence.small_cnn/squeeze-3bit.bit_depth"] == "3"

    metrics = _artifact(run_id, "robustness/metrics.csv").set_index("defence")
    assert metrics.loc["none", "clever_u_mean"] > 0 and metrics.loc["none", "empirical_robustness"] > 0
    assert metrics.loc["squeeze-exact", "loss_sensitivity"] == 0  # the zero gradient, seen by ART too
    detector = _artifact(run_id, "detector.csv")
    assert set(detector["toolkit"]) == {"art", "foolbox", "torchattacks"} and detector["auc"].between(0, 1).all()
    assert set(detector["defence"]) == {"none", "squeeze-3bit", "squeeze-exact", "label_smoothing-0.1"}


def test_an_adversarial_training_attack_its_toolkit_lacks_is_refused_at_validation() -> None:
    at = {"attack": "pgd", "norm": "l1", "eps": 5.0, "toolkit": "torchattacks", "steps": 5}
    entry = {"kind": "adversarial_training", "method": "pgd_at", "attack": at}
    with pytest.raises(ScenarioError, match=r"defences\[0\]: adversarial training attack .*torchattacks has no pgd"):
        load_raw(scenario(defences=[entry]))
