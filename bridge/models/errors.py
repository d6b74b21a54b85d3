"""The error a model that cannot be built raises: one line naming the problem."""

from __future__ import annotations


class ModelError(ValueError):
    """A model that cannot be built; str() is one line naming the problem."""
