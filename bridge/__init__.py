"""advbridge: one attack interface over ART, Foolbox and torchattacks, tracked in MLflow.

`from bridge import run_scenario, open_study` gives the Python API (run a study; read one's results); heavy
modules load on first use so that the command line answers quickly.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bridge.runner.results import open_study
    from bridge.runner.study import run_scenario

__all__ = ["open_study", "run_scenario"]


def __getattr__(name: str) -> Any:
    if name == "run_scenario":
        from bridge.runner.study import run_scenario

        return run_scenario
    if name == "open_study":
        from bridge.runner.results import open_study

        return open_study
    raise AttributeError(f"module 'bridge' has no attribute {name!r}")
