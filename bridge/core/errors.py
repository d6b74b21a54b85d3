"""One-line error messages: what the user reads when something cannot run, and what a failed cell records."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pydantic import ValidationError


class BridgeError(ValueError):
    """The base of the project's own errors: str() is one line saying what is wrong and what is allowed. The command
    line prints it as is and exits 2; anything else that escapes is a defect, reported with its traceback file."""


class ScenarioError(BridgeError):
    """A scenario that cannot run; str() is the one-line message shown to the user (exit code 2, nothing written)."""


def one_line(error: BaseException, limit: int = 500) -> str:
    """`Type: first line of the message` (whitespace collapsed), cut to `limit` characters."""
    lines = [line for line in str(error).splitlines() if line.strip()]
    text = " ".join(lines[0].split()) if lines else ""
    line = f"{type(error).__name__}: {text}" if text else type(error).__name__
    return line if len(line) <= limit else line[: limit - 3] + "..."


def first_error(error: ValidationError) -> str:
    """The first error of a pydantic validation, as `key.path: message` on one line."""
    first = error.errors()[0]
    where = ".".join(str(p) for p in first["loc"])
    if first["type"] == "extra_forbidden":
        return f"{where}: unknown key"
    msg = first["msg"].removeprefix("Value error, ").splitlines()[0]
    return f"{where}: {msg}" if where else msg
