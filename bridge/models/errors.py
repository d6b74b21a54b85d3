"""The error a model that cannot be built raises: one line naming the problem."""

from __future__ import annotations

from bridge.core.errors import BridgeError


class ModelError(BridgeError):
    """A model that cannot be built; str() is one line naming the problem."""
