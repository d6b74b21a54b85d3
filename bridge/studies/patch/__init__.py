"""Adversarial patches as a study kind: a universal patch trained on one split, its success vs scale on held-out
images, per defence, transferred to the study's other models."""
