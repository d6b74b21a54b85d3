"""ART's model extraction attacks (CopycatCNN, KnockoffNets) on the shared victim model, training a thief network.

The bridge reaches this module through importlib (bridge/studies/extraction/run.py) and computes everything it
reports (accuracy, fidelity, queries) itself from the victim's counters and the thief's predictions. Every
constructor and `fit` argument is written out: ART's batch sizes of 1 are never left in force.

Traps handled here: the victim answers probabilities only when the attack trains on them (`use_probability`; a
CrossEntropyLoss thief takes soft labels as probability targets, which logits are not), logits otherwise
(KnockoffNets' adaptive rewards softmax the victim's output themselves); the thief is a plain module, never an
`nn.Sequential`, so ART's wrapper returns its output and not every layer's; ART draws its query selection and the
adaptive bandit from NumPy's global generator and shuffles the thief's batches with torch's, so both are seeded.
"""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np
import torch

from adapters.art_adapter import ModelView, pytorch_classifier
from bridge.models.adversarial_training import seeded_numpy
from bridge.models.shared import SharedModel

CLASSES = {"copycat": "CopycatCNN", "knockoff": "KnockoffNets"}


def _attack_kwargs(
    attack: str, budget: int, epochs: int, fit_batch: int, query_batch: int, sampling: str, reward: str, soft: bool
) -> dict[str, Any]:
    """The native constructor's keyword arguments, every one of them (the victim estimator apart)."""
    kwargs = {"batch_size_fit": fit_batch, "batch_size_query": query_batch, "nb_epochs": epochs,
              "nb_stolen": budget, "use_probability": soft}  # fmt: skip
    if attack == "knockoff":
        kwargs |= {"sampling_strategy": sampling, "reward": reward, "verbose": False}
    return kwargs


def native_call(
    attack: str, budget: int, epochs: int, fit_batch: int, query_batch: int, sampling: str, reward: str, soft: bool
) -> dict[str, Any]:
    """The ART class and arguments a task runs (`translation.json` on its child run), checked against the class's
    signature: a parameter left to ART's default is an error."""
    from art.attacks import extraction

    name = CLASSES[attack]
    kwargs = _attack_kwargs(attack, budget, epochs, fit_batch, query_batch, sampling, reward, soft)
    params = set(inspect.signature(getattr(extraction, name)).parameters) - {"classifier"}
    if missing := sorted(params - set(kwargs)):
        raise AssertionError(f"{name}({', '.join(missing)}) left to ART's defaults")
    return {"native_class": name, "kwargs": kwargs}


def extract(
    victim: SharedModel,
    thief: SharedModel,
    optimizer: torch.optim.Optimizer,
    call: dict[str, Any],
    x: np.ndarray,
    y: np.ndarray | None,
    seed: int,
) -> None:
    """Run `call` (from `native_call`) on the victim, training `thief` in place with `optimizer`. `x`: the query
    pool (NCHW, float32); `y`: its true labels, which only adaptive sampling reads (to pick a class per query)."""
    from art.attacks import extraction

    soft = call["kwargs"]["use_probability"]
    view = ModelView(victim, float32=False, softmax=soft)
    estimator = pytorch_classifier(view, victim.input_shape, victim.n_classes, victim.bounds, victim.device)
    thieved = pytorch_classifier(thief, thief.input_shape, thief.n_classes, thief.bounds, thief.device,
                                 torch.nn.CrossEntropyLoss(), optimizer)  # fmt: skip
    attack = getattr(extraction, call["native_class"])(estimator, **call["kwargs"])
    adaptive = call["kwargs"].get("sampling_strategy") == "adaptive"
    torch.manual_seed(seed)  # the thief's batches are shuffled with torch's global generator
    with seeded_numpy(seed):
        attack.extract(x.astype(np.float32), y if adaptive else None, thieved_classifier=thieved)
    thief.eval()
