"""advbridge: one attack interface over ART, Foolbox and torchattacks, tracked in MLflow.

`from bridge import run_scenario` gives the Python API; heavy modules load on first use so that the
command line answers quickly.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bridge.runner.study import run_scenario

__all__ = ["run_scenario"]


def __getattr__(name: str) -> Any:
    if name == "run_scenario":
        from bridge.runner.study import run_scenario

        return run_scenario
    raise AttributeError(f"module 'bridge' has no attribute {name!r}")
