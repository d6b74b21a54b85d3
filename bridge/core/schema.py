"""The one base of every configuration the user writes: unknown keys are errors, never silently ignored."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Strict(BaseModel):
    """A pydantic model that refuses unknown keys (a misspelt option must not fall back on a default)."""

    model_config = ConfigDict(extra="forbid")
