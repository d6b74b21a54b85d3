"""Model inversion as a study kind: ART's MIFace per class on every (model, defence), judged by the bridge."""
