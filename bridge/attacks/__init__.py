"""Attacks: the catalogue of canonical attacks, the resolved spec of one cell, and the one adapter interface."""
