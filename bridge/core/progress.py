"""The one progress-bar setup: rich, on stderr (stdout stays for results), off when not wanted."""

from __future__ import annotations

from typing import Any


def progress_bar(*columns: Any, enabled: bool = True) -> Any:
    """A `rich.progress.Progress` on stderr with `columns` between the description and elapsed/remaining time."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        *columns,
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        disable=not enabled,
    )
