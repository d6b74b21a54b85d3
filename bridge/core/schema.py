"""The one base of every configuration the user writes, and the one rule for names.

Unknown keys are errors (a misspelt option must not fall back on a default); NaN and infinite numbers are refused
in every float field, and empty strings in every string field: a value is meant wherever a key is written.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict

# A name becomes part of a path (an experiment's artifact folder, an artifact path): no separators, no `.`/`..`,
# no leading dot or space, bounded length.
NAME_RULE = "letters, digits, _ . + - and spaces, starting with a letter, digit or _, at most 100 characters"
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+ -]{0,99}")


def check_name(value: str) -> str:
    """`value` if it is a name (NAME_RULE), else ValueError naming the rule."""
    if not _NAME.fullmatch(value):
        shown = value if len(value) <= 40 else value[:37] + "..."
        raise ValueError(f"{shown!r} is not a name: {NAME_RULE}")
    return value


Name = Annotated[str, AfterValidator(check_name)]


class Strict(BaseModel):
    """A pydantic model that refuses unknown keys, NaN and infinite floats, and empty strings."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, str_min_length=1)
