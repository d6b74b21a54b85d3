"""Defences: preprocessing layers with explicit gradients, the defences axis of a study, and detectors."""
