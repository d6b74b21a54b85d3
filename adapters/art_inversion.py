"""ART's model inversion: MIFace (Fredrikson et al. 2015) over the shared model, every argument explicit.

ART's MIFace climbs the class gradient of the estimator's output and stops on a cost `1 - output[class]` against
`threshold`: both mean what the paper means only when the output is a probability, so the estimator here sees the
model's softmax (`ModelView(softmax=True)`), not its logits.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from adapters.art_adapter import ModelView, pytorch_classifier
from bridge.models.shared import SharedModel


def miface(model: SharedModel, x0: np.ndarray, classes: np.ndarray, cfg: Any) -> np.ndarray:
    """One reconstruction per entry of `classes`, each started from its row of `x0` (NCHW, the data's range)."""
    from art.attacks.inference.model_inversion import MIFace

    estimator = pytorch_classifier(ModelView(model, float32=True, softmax=True), model.input_shape, model.n_classes,
                                   model.bounds, model.device)  # fmt: skip
    attack = MIFace(estimator, max_iter=cfg.max_iter, window_length=cfg.window_length, threshold=cfg.threshold,
                    learning_rate=cfg.learning_rate, batch_size=cfg.batch_size, verbose=False)  # fmt: skip
    return attack.infer(x0.astype(np.float32), classes.astype(np.int64))
