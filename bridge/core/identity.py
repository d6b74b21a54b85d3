"""Identities: stable hashes of configurations and files, and the versions of the code that computes results."""

from __future__ import annotations

import hashlib
import json
from functools import cache
from pathlib import Path
from typing import Any

# The distributions whose versions are part of a result's identity, by the names the bridge uses for them.
DISTRIBUTIONS = {
    "advbridge": "advbridge",
    "torch": "torch",
    "art": "adversarial-robustness-toolbox",
    "foolbox": "foolbox",
    "torchattacks": "torchattacks",
    "tensorflow": "tensorflow",
}


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no spaces: the same configuration always gives the same text."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def digest(value: Any, length: int = 16) -> str:
    """A short sha256 of `value`'s canonical JSON."""
    return hashlib.sha256(canonical_json(value).encode()).hexdigest()[:length]


def file_sha256(path: Path) -> str:
    sha = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            sha.update(chunk)
    return sha.hexdigest()


@cache
def version(name: str) -> str:
    """The installed version of `name` (a key of DISTRIBUTIONS), read from package metadata without importing it."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed(DISTRIBUTIONS[name])
    except PackageNotFoundError:
        return "absent"
