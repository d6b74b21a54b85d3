"""The type a toolkit class's parameter takes, read from its signature, so that a wrong `options` value is a
validation error naming the key, not a failed cell at run time.

The annotation is read when it is plain (`int`, `float | None`, `Optional[float]`, ART's string annotations such
as 'int | float | str'); a parameter without one is judged by its default (a number, a bool or a string).
Anything else (arrays, estimators, callables) is left to the toolkit.
"""

from __future__ import annotations

import inspect
import types
import typing
from typing import Any

_TYPES: dict[str, tuple[type, ...]] = {
    "int": (int,),
    "float": (int, float),
    "bool": (bool,),
    "str": (str,),
    "None": (type(None),),
    "NoneType": (type(None),),
}


def _parts(annotation: Any) -> list[str] | None:
    """The names of the alternatives of a plain annotation, or None when it is not plain."""
    if isinstance(annotation, str):
        return [p.strip() for p in annotation.split("|")]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return [getattr(a, "__name__", "") for a in typing.get_args(annotation)]
    name = getattr(annotation, "__name__", None)
    return [name] if isinstance(name, str) else None


def accepted(parameter: inspect.Parameter) -> tuple[type, ...] | None:
    """The Python types a scenario value may have for `parameter`, or None when they cannot be told."""
    if parameter.annotation is inspect.Parameter.empty:
        default = parameter.default
        if isinstance(default, bool):
            return (bool,)
        if isinstance(default, int | float):
            return (int, float)
        return (str,) if isinstance(default, str) else None
    parts = _parts(parameter.annotation)
    if not parts or any(p not in _TYPES for p in parts):
        return None
    return tuple(t for p in parts for t in _TYPES[p])


def option_problem(cls: type, name: str, value: Any) -> str | None:
    """Why `value` cannot be `cls`'s parameter `name`, or None (also when the signature cannot tell)."""
    parameter = inspect.signature(cls).parameters.get(name)
    allowed = None if parameter is None else accepted(parameter)
    if allowed is None:
        return None
    if isinstance(value, allowed) and (bool in allowed or not isinstance(value, bool)):
        return None
    names = sorted({"number" if t is float else "integer" if t is int else t.__name__ for t in allowed} - (
        {"integer"} if float in allowed else set()))  # fmt: skip
    return f"{name} takes {' or '.join(names)}, not {type(value).__name__} {value!r}"
