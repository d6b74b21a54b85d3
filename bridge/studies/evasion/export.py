"""`export: npz`: a cell's adversarial examples with their labels and predictions, as one file on its child run
that numpy alone reads (`np.load(path)`), written by the cell and read back by `bridge.open_study(...).examples`."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd

EXAMPLES_FILE = "examples.npz"
EXAMPLE_COLUMNS = ("label", "target", "clean_pred", "adv_pred", "success")  # beside x_adv, per sample


def examples_npz(x_adv: np.ndarray, per_sample: pd.DataFrame) -> bytes:
    """x_adv in the model's input space and, per sample, its label, target (-1 untargeted), clean and adversarial
    predictions and the bridge's success verdict."""
    buffer = io.BytesIO()
    np.savez_compressed(buffer, x_adv=x_adv, **{c: per_sample[c].to_numpy() for c in EXAMPLE_COLUMNS})
    return buffer.getvalue()
