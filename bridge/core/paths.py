"""advbridge's own folder on this machine: `$ADVBRIDGE_CACHE`, default `~/.cache/advbridge`.

It holds the model cache (`models/`), the datasets (`data/<name>/`), the batches `batch_size: auto` probed
(`batch_sizes.json`) and the tracebacks of unexpected errors (`errors/`); a study's records go to the tracking store,
never here.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path


def cache_root() -> Path:
    return Path(os.environ.get("ADVBRIDGE_CACHE", Path.home() / ".cache" / "advbridge"))


def write_whole(path: Path, write: Callable[[Path], None]) -> None:
    """`write` a file beside `path` (named for this process), then rename it onto `path`: readers see no file or a
    whole one, and concurrent writers never mix. Interrupted (any exception, KeyboardInterrupt included), the
    partial file is removed."""
    tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp{path.suffix}")
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
