"""The membership study's pure parts: metrics from scores (hand-checked ROC points, TPR at a given FPR), LiRA's
score on a constructed case, the split, the control check and the scenario's refusals."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bridge.core.errors import ScenarioError
from bridge.engine.result import Result
from bridge.scenario.load import load_raw
from bridge.studies.membership import split as splits
from bridge.studies.membership.aggregate import control_checks
from bridge.studies.membership.lira import lira_scores, phi
from bridge.studies.membership.roc import chance_tolerance, membership_metrics, roc


def test_roc_points_and_metrics_by_hand():
    # members score .9 .8 .6, non-members .7 .5 .4: thresholds from the top give these (fpr, tpr)
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4])
    members = np.array([1, 1, 0, 1, 0, 0])
    fpr, tpr = roc(scores, members)
    assert np.allclose(fpr, [0, 0, 0, 1 / 3, 1 / 3, 2 / 3, 1])
    assert np.allclose(tpr, [0, 1 / 3, 2 / 3, 2 / 3, 1, 1, 1])
    m = membership_metrics(scores, members)
    assert m["auc"] == pytest.approx(8 / 9)  # 8 of the 9 (member, non-member) pairs ordered right
    assert m["balanced_accuracy"] == pytest.approx(5 / 6)  # (2/3 + 1) / 2 at threshold .8
    assert m["tpr_at_fpr_0.01"] == m["tpr_at_fpr_0.001"] == pytest.approx(2 / 3)  # zero false positives
    assert m["fpr_floor"] == pytest.approx(1 / 3) and m["n_members"] == m["n_nonmembers"] == 3


def test_binary_scores_tie_and_give_no_low_fpr_power():
    """The gap attack's 0/1 scores: ties count half in the AUC, and no threshold has few false positives."""
    m = membership_metrics(np.array([1, 1, 0, 1, 0, 0]), np.array([1, 1, 1, 0, 0, 0]))
    assert m["auc"] == pytest.approx(2 / 3)
    assert m["tpr_at_fpr_0.01"] == 0.0
    assert m["balanced_accuracy"] == pytest.approx((2 / 3 + 2 / 3) / 2)


def test_chance_tolerance_is_three_null_standard_errors():
    assert chance_tolerance(100, 100) == pytest.approx(3 * math.sqrt(201 / 120_000))


def test_phi_is_the_logit_of_the_true_class_probability_and_stable():
    p = math.exp(2) / (math.exp(2) + 2)
    assert phi(np.array([[2.0, 0.0, 0.0]]), np.array([0]))[0] == pytest.approx(math.log(p / (1 - p)))
    assert phi(np.array([[1000.0, 0.0, -1000.0]]), np.array([0]))[0] == pytest.approx(1000.0)
    assert phi(np.array([[1000.0, 0.0, -1000.0]]), np.array([2]))[0] == pytest.approx(-2000.0)


def test_lira_scores_on_a_constructed_case():
    # two examples, four shadows: IN confidences 4 and 6 (mean 5), OUT -1 and 1 (mean 0): global variances 1
    shadows = np.array([[4.0, -1.0], [6.0, 1.0], [-1.0, 4.0], [1.0, 6.0]])
    inside = np.array([[True, False], [True, False], [False, True], [False, True]])
    target = np.array([5.0, 0.0])
    online = lira_scores(target, shadows, inside, "online")
    assert online == pytest.approx([12.5, -12.5])  # log N(5; 5, 1) - log N(5; 0, 1), and the mirror
    offline = lira_scores(target, shadows, inside, "offline")
    assert offline == pytest.approx([math.log(0.5 * math.erfc(-5 / math.sqrt(2))), math.log(0.5)])
    with pytest.raises(ValueError, match="no shadow model"):
        lira_scores(target, shadows, np.zeros_like(inside), "online")


def test_split_is_disjoint_equal_deterministic_and_halved():
    s = splits.draw(1257, 200, seed=3)
    assert len(s.members) == len(s.nonmembers) == 200 and len(s.rest) == 857
    assert len(set(s.members) | set(s.nonmembers) | set(s.rest)) == 1257
    assert np.array_equal(s.members, splits.draw(1257, 200, seed=3).members)
    assert not np.array_equal(s.members, splits.draw(1257, 200, seed=4).members)
    assert sorted([*s.fit, *s.evaluated]) == list(range(400))
    assert s.is_member(s.evaluated).sum() == s.is_member(s.fit).sum() == 100
    assert not set(splits.control_indices(s)) & set(s.pool)
    online = splits.shadow_sets(s, "online", 4, seed=3)
    assert (np.stack([np.isin(s.pool, t) for t in online]).sum(0) == 2).all()  # each example IN exactly twice
    evaluated = set(s.pool[s.evaluated])
    assert all(not set(t) & evaluated and len(t) == 200 for t in splits.shadow_sets(s, "offline", 3, seed=3))
    with pytest.raises(ValueError, match="at most 628"):
        splits.draw(1257, 629, seed=0)


def _attack(model: str, auc: float, on: str = "control") -> Result:
    row = {"model": model, "attack": "lira-online-4", "evaluated_on": on, "auc": auc, "n_members": 100,
           "n_nonmembers": 100}  # fmt: skip
    return Result("k", "attack", "l", "ok", row=row)


def test_control_check_fires_on_a_control_that_separates_members():
    checks = control_checks([_attack("clean", 0.55), _attack("leaky", 0.8), _attack("leaky", 0.9, "target")], True)
    status = dict(zip(checks["model"], checks["status"], strict=True))
    assert status == {"clean": "passed", "leaky": "failed"}
    assert "lira-online-4: AUC 0.800" in checks.loc[checks["model"] == "leaky", "detail"].item()
    assert control_checks([_attack("m", 0.9, "target")], False)["status"].item() == "skipped"


SCENARIO = {"name": "mia", "model": {"arch": "small_cnn"}}


@pytest.mark.parametrize(
    ("attack", "message"),
    [
        ({"attack": "lira", "shadow_models": 0, "variant": "offline"}, "attacks[0].lira.shadow_models: LiRA offline"),
        ({"attack": "lira", "shadow_models": 1}, "attacks[0].lira.shadow_models: LiRA online needs at least 2"),
        ({"attack": "blackbox", "model_type": "svm"}, "attacks[0].blackbox.model_type"),
        ({"attack": "label_only"}, "membership.attacks[0]"),
    ],
)
def test_refusals(attack, message):
    with pytest.raises(ScenarioError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_raw({**SCENARIO, "membership": {"members": 100, "attacks": [attack]}})


def test_accepted_section_and_target_training_checked():
    plan = load_raw({**SCENARIO, "membership": {"members": 100, "attacks": [{"attack": "lira", "shadow_models": 1,
                                                                             "variant": "offline"}]}})  # fmt: skip
    assert plan.studies["membership"].attacks[0].shadow_models == 1
    with pytest.raises(ScenarioError, match="membership.target_training: training.epochs"):
        load_raw({**SCENARIO, "membership": {"members": 100, "target_training": {"epochs": 0},
                                             "attacks": [{"attack": "gap"}]}})  # fmt: skip


def test_the_privacy_tradeoff_takes_each_targets_strongest_attack_and_its_held_out_accuracy() -> None:
    import pandas as pd

    from bridge.report import plots
    from bridge.studies.membership.aggregate import privacy_tradeoff

    def row(model: str, attack: str, tpr: float, on: str = "target") -> dict:
        return {"model": model, "defence": model.partition("/")[2] or "none", "attack": attack, "evaluated_on": on,
                "status": "ok", "tpr_at_fpr_0.01": tpr, "auc": 0.5 + tpr}  # fmt: skip

    table = pd.DataFrame([row("cnn", "gap", 0.01), row("cnn", "lira", 0.09), row("cnn", "lira", 0.5, "control"),
                          row("cnn/dp_sgd-1", "gap", 0.0), row("cnn/dp_sgd-1", "lira", 0.02)])  # fmt: skip
    models = pd.DataFrame(
        [
            {"model": "cnn", "role": "target", "nonmember_accuracy": 0.93},
            {"model": "cnn", "role": "control", "nonmember_accuracy": 0.91},
            {"model": "cnn/dp_sgd-1", "role": "target", "nonmember_accuracy": 0.81, "dp_epsilon": 3.2},
        ]
    )
    found = privacy_tradeoff(table, models).set_index("model")
    assert found.loc["cnn", "attack"] == "lira" and found.loc["cnn", "tpr_at_fpr_0.01"] == 0.09  # not the control's
    assert found.loc["cnn", "nonmember_accuracy"] == 0.93 and pd.isna(found.loc["cnn", "dp_epsilon"])
    assert found.loc["cnn/dp_sgd-1", "dp_epsilon"] == 3.2 and found.loc["cnn/dp_sgd-1", "nonmember_accuracy"] == 0.81
    fig = plots.privacy_tradeoff(found.reset_index())
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert "cnn" in texts and "cnn/dp_sgd-1 (eps 3.2)" in texts


def test_target_training_goes_on_top_of_a_training_defence() -> None:
    """A DP-SGD victim's target: the defence's training and the study's target_training, under the victim's name."""
    from bridge.defences.grid import parse_entry
    from bridge.models.config import ModelConfig
    from bridge.studies.membership.config import target_model

    dp = parse_entry({"kind": "dp_sgd", "noise_multiplier": 1.0, "max_grad_norm": 1.0, "delta": 1e-5,
                      "training": {"lr": 0.01}})  # fmt: skip
    target = target_model(ModelConfig(arch="small_cnn"), dp, {"epochs": 30})
    assert target.name == "small_cnn/dp_sgd-1" and (target.training.epochs, target.training.lr) == (30, 0.01)
    assert target.training.dp.noise_multiplier == 1.0


def test_shapr_is_accepted_with_its_metric_and_refuses_another():
    entries = [{"attack": "shapr"}, {"attack": "shapr", "knn_metric": "cosine"}]
    plan = load_raw({**SCENARIO, "membership": {"members": 100, "attacks": entries}})
    attacks = plan.studies["membership"].attacks
    assert attacks[0].knn_metric is None and attacks[1].knn_metric == "cosine"
    with pytest.raises(ScenarioError, match=r"attacks\[0\]\.shapr\.knn_metric"):
        load_raw(
            {**SCENARIO, "membership": {"members": 100, "attacks": [{"attack": "shapr", "knn_metric": "hamming"}]}}
        )


def test_leakage_metrics_have_no_roc():
    from bridge.studies.membership.run import leakage_metrics

    m = leakage_metrics(np.array([0.5, -0.25, 0.0, 1.5]), 7, 0.0)
    assert (m["leakage_mean"], m["leakage_max"], m["leaking_share"]) == (0.4375, 1.5, 0.5)  # 0 is not a leak
    assert (m["n_members"], m["n_nonmembers"]) == (4, 7)
    pdtp = leakage_metrics(np.array([1.0, 3.0, 1.0, 1.0]), float("nan"), 1.0)  # PDTP's ratio: 1 is no change
    assert (pdtp["leakage_mean"], pdtp["leakage_max"], pdtp["leaking_share"]) == (1.5, 3.0, 0.25)
    assert all(math.isnan(m[k]) for k in ("auc", "balanced_accuracy", "tpr_at_fpr_0.01", "tpr_at_fpr_0.001",
                                          "fpr_floor"))  # fmt: skip


def test_the_aggregate_keeps_a_shapr_row_and_skips_it_in_checks_rocs_and_tradeoff():
    import pandas as pd

    from bridge.studies.membership.aggregate import aggregate
    from bridge.studies.membership.run import leakage_metrics

    rng = np.random.default_rng(0)
    scored = []
    for on in ("target", "control"):
        scores, members = rng.uniform(size=20), np.repeat([True, False], 10)
        row = {"model": "cnn", "defence": "none", "dataset": "digits", "attack": "gap", "toolkit": "art",
               "evaluated_on": on, "status": "ok", **membership_metrics(scores, members)}  # fmt: skip
        per_sample = pd.DataFrame({"index": np.arange(20), "member": members, "score": scores})
        scored.append(Result(f"gap-{on}", "attack", "l", "ok", row=row, per_sample=per_sample))
    shapr = []
    for on, leak in (("target", [0.2, 0.1, -0.1]), ("control", [-0.3, -0.2, 0.1])):
        row = {"model": "cnn", "defence": "none", "dataset": "digits", "attack": "shapr", "toolkit": "art",
               "evaluated_on": on, "status": "ok", **leakage_metrics(np.array(leak), 3, 0.0)}  # fmt: skip
        per_sample = pd.DataFrame({"index": [0, 1, 2], "member": True, "score": leak})
        shapr.append(Result(f"shapr-{on}", "attack", "l", "ok", row=row, per_sample=per_sample))
    model = Result("m", "model", "l", "ok", row={"model": "cnn", "role": "target", "nonmember_accuracy": 0.9})
    results = [*scored, *shapr, model]
    summary = aggregate(results, {"rows": [{"task": r.key} for r in scored + shapr], "control": True})
    table = summary.table.set_index(["attack", "evaluated_on"])
    assert table.loc[("shapr", "target"), "leaking_share"] == pytest.approx(2 / 3)
    assert table.loc[("shapr", "control"), ["auc", "tpr_at_fpr_0.01"]].isna().all()
    assert table.loc[("gap", "target"), ["leakage_mean", "leaking_share"]].isna().all()
    check = summary.checks.set_index("name").loc["membership_control_at_chance"]
    assert check["status"] == "passed" and check["detail"].startswith("1 attacks"), check  # the gap row only
    assert "membership/plots/roc-cnn.png" in summary.record.files
    assert summary.record.metrics["membership.leakage_mean.cnn.shapr.target"] == pytest.approx(0.2 / 3)
    assert "membership.auc.cnn.shapr.target" not in summary.record.metrics
    tradeoff = summary.record.files["membership/tradeoff.csv"]
    assert "gap" in tradeoff and "shapr" not in tradeoff
    shown = summary.markdown.partition("Each row is")[0]  # the attacks' table: empty cells where a row has none
    assert "nan" not in shown and "leaking_share" in shown and "SHAPr" in summary.markdown
    assert "PDTP" in summary.markdown
    # a study of SHAPr alone: no ROC plot, no tradeoff, the control check skipped
    alone = aggregate([*shapr, model], {"rows": [{"task": r.key} for r in shapr], "control": True})
    assert not any(f.startswith("membership/plots/roc") for f in alone.record.files)
    assert alone.checks["status"].item() == "skipped"


def test_shapr_through_art_on_the_softmax_and_its_mean_is_a_1nn_held_out_accuracy():
    """ART's SHAPr on a small linear net: one score per training sample, and (the Shapley values' efficiency, ART's
    K=1 recursion) their mean is the held-out accuracy of a 1-NN over the training samples' output probabilities."""
    import torch
    from sklearn.neighbors import KNeighborsClassifier

    from adapters.art_membership import shapr_scores

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3)).eval()
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(50, 1, 2, 2)).astype(np.float32)
    y = rng.integers(0, 3, size=50)
    train, test = (x[:30], y[:30]), (x[30:], y[30:])
    scores = shapr_scores(net, (1, 2, 2), 3, (0.0, 1.0), torch.device("cpu"), train, test, None)
    assert scores.shape == (30,)
    with torch.no_grad():
        probs = [torch.softmax(net(torch.from_numpy(a)), 1).numpy() for a in (train[0], test[0])]
    one_nn = KNeighborsClassifier(n_neighbors=1).fit(probs[0], train[1]).score(probs[1], test[1])
    assert scores.mean() == pytest.approx(one_nn, abs=1e-5)


def test_an_unknown_key_in_an_attack_entry_names_the_entrys_own_keys() -> None:
    """The attacks are a union told apart by `attack`: the message lists the keys of the entry that was meant."""
    from bridge.core.errors import ScenarioError
    from bridge.scenario.load import load_raw

    raw = {"name": "x", "membership": {"members": 50, "attacks": [{"attack": "lira", "shadow_models": 2, "foo": 1}]}}
    with pytest.raises(ScenarioError, match=r"membership\.attacks\[0\]\.lira\.foo: unknown key; allowed: attack, "
                                            r"variant, shadow_models$"):  # fmt: skip
        load_raw(raw)


def test_pdtp_is_accepted_with_every_parameter_written_out() -> None:
    entries = [{"attack": "pdtp"}, {"attack": "pdtp", "samples": 3, "num_iter": 2, "comparison_type": "difference"}]
    attacks = load_raw({**SCENARIO, "membership": {"members": 100, "attacks": entries}}).studies["membership"].attacks
    assert (attacks[0].samples, attacks[0].num_iter, attacks[0].comparison_type) == (10, 10, "ratio")  # ART's
    assert (attacks[1].samples, attacks[1].num_iter, attacks[1].comparison_type) == (3, 2, "difference")
    assert (attacks[0].unchanged, attacks[1].unchanged) == (1.0, 0.0)


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"comparison_type": "log"}, r"membership\.attacks\[1\]\.pdtp\.comparison_type: Input should be 'ratio' or"),
        ({"num_iter": 0}, r"membership\.attacks\[1\]\.pdtp\.num_iter: Input should be greater than 0"),
        ({"samples": 101}, r"attacks\[1\]\.pdtp\.samples: 101 scored members, more than the 100 members"),
        ({"num_bins": 50}, r"pdtp\.num_bins: unknown key; allowed: attack, samples, num_iter, comparison_type$"),
    ],
)
def test_pdtp_refusals_are_one_line(entry: dict, message: str) -> None:
    attacks = [{"attack": "gap"}, {"attack": "pdtp", **entry}]
    with pytest.raises(ScenarioError, match=message) as error:
        load_raw({**SCENARIO, "membership": {"members": 100, "attacks": attacks}})
    assert "\n" not in str(error.value)


def test_pdtp_is_unsupported_where_arts_loop_cannot_repeat_the_targets_training() -> None:
    """ART retrains with its own loop: a target trained with mixup (or DP-SGD, augmentation...) gets an unsupported
    PDTP row and no PDTP task; the other attacks still run."""
    from bridge.engine.recipe import Recipe
    from bridge.models.training import TrainingConfig
    from bridge.studies.membership.config import pdtp_unsupported
    from bridge.studies.registry import KINDS

    assert pdtp_unsupported(TrainingConfig(optimizer="sgd", schedule="cosine", label_smoothing=0.1)) is None
    dp = {"noise_multiplier": 1.0, "max_grad_norm": 1.0, "delta": 1e-5}
    assert pdtp_unsupported(TrainingConfig(mixup=0.2)).endswith("which has no mixup")
    assert pdtp_unsupported(TrainingConfig(dp=dp)).endswith("which has no dp")
    recipe = Recipe("small_cnn", "small_cnn", {"arch": "small_cnn"}, "none", "none", {"dataset": "digits"}, 0, "cpu",
                    "fp32", 16, "weights", "evaluated", "trained")  # fmt: skip
    for training, planned in (({}, 2), ({"mixup": 0.2}, 0)):
        section = {"members": 50, "target_training": training, "attacks": [{"attack": "gap"}, {"attack": "pdtp"}]}
        plan = load_raw({**SCENARIO, "membership": section})
        tasks, meta = KINDS["membership"].tasks(plan.scenario, plan.studies["membership"], [recipe], 10)
        pdtp = [t for t in tasks if t.kind == "attack" and t.params["label"] == "pdtp-ratio"]
        assert len(pdtp) == planned and len([t for t in tasks if t.params.get("label") == "gap"]) == 2
        refused = [e["row"] for e in meta["rows"] if "row" in e]
        assert len(refused) == 2 - planned
        assert all(r["attack"] == "pdtp-ratio" and r["status"].endswith("which has no mixup") for r in refused)


def test_pdtp_cases_retrain_the_target_without_a_member_and_the_control_on_its_own_data() -> None:
    from bridge.studies.membership.run import pdtp_cases

    x, y = np.arange(20.0)[:, None] * 10, np.arange(20)
    members, control = np.array([7, 3, 9, 1]), np.array([12, 15, 11])
    ((tx, ty, at),) = pdtp_cases(x, y, members, np.array([9, 7]), "target")
    assert list(ty) == [7, 3, 9, 1] and list(at) == [2, 0]  # in the scored order
    cases = pdtp_cases(x, y, control, np.array([9, 7]), "control")
    assert [list(c[1]) for c in cases] == [[12, 15, 11, 9], [12, 15, 11, 7]]
    assert all(list(c[2]) == [3] and np.delete(c[1], c[2]).tolist() == [12, 15, 11] for c in cases)
    assert cases[0][0][3, 0] == 90.0
    drawn = splits.pdtp_members(splits.draw(1257, 200, seed=3), 10, seed=3)
    assert len(set(drawn)) == 10 and drawn.max() < 200
    assert np.array_equal(drawn, splits.pdtp_members(splits.draw(1257, 200, seed=3), 10, seed=3))


def test_pdtp_retrains_through_arts_loop_with_the_bridges_training(monkeypatch: pytest.MonkeyPatch) -> None:
    """ART calls `fit(x, y)` once per sample and iteration, with its defaults (10 epochs, batch 128) unless told, and
    its `reset` leaves the optimizer's state and a schedule's decayed lr: every retraining here gets the training's
    epochs, batch size, the bridge's drop of a last batch of one, a fresh schedule, the initial lr and no momentum
    left over; and every parameter of ART's PDTP is passed."""
    import inspect

    import torch
    from art.estimators.classification import PyTorchClassifier
    from art.metrics.privacy import PDTP

    from adapters.art_membership import pdtp_scores
    from bridge.models.training import TrainingConfig
    from bridge.studies.membership.config import Pdtp

    assert set(inspect.signature(PDTP).parameters) == {"target_estimator", "extra_estimator", "x", "y", "indexes",
                                                       "num_iter", "comparison_type"}  # fmt: skip
    calls = []
    original = PyTorchClassifier.fit

    def spy(self, x, y, **kwargs):
        opt = self._optimizer
        calls.append({"n": len(x), "lr": opt.param_groups[0]["lr"], "state": len(opt.state), **kwargs})
        original(self, x, y, **kwargs)
        calls[-1]["lr_after"], calls[-1]["state_after"] = opt.param_groups[0]["lr"], len(opt.state)

    monkeypatch.setattr(PyTorchClassifier, "fit", spy)
    training = TrainingConfig(optimizer="sgd", lr=0.1, epochs=3, batch_size=3, schedule="step", step_size=1,
                              gamma=0.5)  # fmt: skip
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))
    template = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(8, 1, 2, 2)).astype(np.float32)
    y = rng.integers(0, 3, size=8)
    cases = [(x, y, np.array([0, 5])), (x[:7], y[:7], np.array([6]))]  # retrained on 7, then 6 samples
    entry = Pdtp(attack="pdtp", samples=2, num_iter=2, comparison_type="ratio")
    values = pdtp_scores(net, template, (1, 2, 2), 3, (0.0, 1.0), torch.device("cpu"), cases, entry, training, 0)
    assert values.shape == (3, 3) and (values[:, 0] >= 1).all() and (values[:, 1] >= values[:, 0]).all()
    assert len(calls) == 2 * 2 + 1 * 2 and [c["n"] for c in calls] == [7] * 4 + [6] * 2
    assert all(c["nb_epochs"] == 3 and c["batch_size"] == 3 and c["training_mode"] for c in calls)
    assert [c["drop_last"] for c in calls] == [True] * 4 + [False] * 2  # 7 = 2 * 3 + 1: the bridge drops the 1
    assert all(isinstance(c["scheduler"], torch.optim.lr_scheduler.StepLR) for c in calls)
    assert all(c["lr"] == 0.1 and c["state"] == 0 for c in calls)  # restored before each retraining ...
    assert all(c["lr_after"] == pytest.approx(0.1 * 0.5**3) and c["state_after"] > 0 for c in calls)  # ... moved by it
    again = pdtp_scores(net, template, (1, 2, 2), 3, (0.0, 1.0), torch.device("cpu"), cases, entry, training, 0)
    assert np.array_equal(values, again)  # ART's initialisation and shuffles come from the seeded generators


def test_pdtp_on_digits_a_stable_target_leaks_above_its_control() -> None:
    """A real measurement: a linear model trained by the bridge (full-batch SGD with weight decay: the retraining
    converges to the same model whatever ART's initialisation) on 30 digits, PDTP of 4 of them through ART. The
    target moves when one of its samples is left out; the control (trained on 30 others, the sample appended and
    removed, `pdtp_cases`) is retrained on its own data and barely moves: nothing of the sample to leak."""
    import torch

    from adapters.art_membership import pdtp_scores
    from bridge.data.dataset import Dataset, load_split
    from bridge.models.training import TrainingConfig, train
    from bridge.studies.membership.config import Pdtp
    from bridge.studies.membership.run import leakage_metrics, pdtp_cases

    data = load_split("digits", "train")
    x, y = data.x.numpy(), data.y.numpy()
    training = TrainingConfig(optimizer="sgd", lr=1.0, weight_decay=0.01, epochs=100, batch_size=64)

    def linear() -> torch.nn.Module:
        return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, data.n_classes))

    members, control = np.arange(30), np.arange(30, 60)
    entry = Pdtp(attack="pdtp", samples=4, num_iter=1, comparison_type="ratio")
    found = {}
    for role, indices in (("target", members), ("control", control)):
        torch.manual_seed(training.seed)
        net = linear()
        train(net, Dataset("d", data.x[indices], data.y[indices], data.n_classes, data.bounds), training)
        cases = pdtp_cases(x, y, indices, members[:4], role)
        values = pdtp_scores(net, linear(), data.input_shape, data.n_classes, data.bounds, torch.device("cpu"), cases,
                             entry, training, 0)  # fmt: skip
        found[role] = leakage_metrics(values[:, 0], float("nan"), entry.unchanged)
    target, baseline = found["target"], found["control"]
    # measured: target mean 13.96 (5.28 to 30.2 per member), control 1.67 for each member (a bin's width moved)
    assert target["leakage_mean"] > 3 * baseline["leakage_mean"] and baseline["leakage_max"] < 2, found
