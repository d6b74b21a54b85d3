"""MLflow tracking: which store, where artifacts go, and the experiment, created before any run starts.

Default store: `sqlite:///mlruns/mlflow.db` with artifacts in `mlruns/artifacts/` (MLflow 3.x raises on
the file store). A scenario's `tracking.uri`, else $MLFLOW_TRACKING_URI, overrides it; another sqlite file
gets an `artifacts/` folder beside it; an http(s) URI uses the server's artifact store.
"""

from __future__ import annotations

import os
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

DEFAULT_URI = "sqlite:///mlruns/mlflow.db"


def resolve_uri(scenario_uri: str | None = None) -> str:
    """The tracking URI in force: scenario field, else the environment, else the project default.

    Relative sqlite paths are made absolute so that a server or worker started elsewhere finds them.
    """
    uri = scenario_uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_URI
    db = sqlite_path(uri)
    return f"sqlite:///{db.resolve()}" if db is not None else uri


def sqlite_path(uri: str) -> Path | None:
    if not uri.startswith("sqlite:///"):
        return None
    return Path(uri.removeprefix("sqlite:///"))


def artifact_root(uri: str) -> Path | None:
    """`artifacts/` beside a sqlite database; None for servers (they own their artifact store)."""
    db = sqlite_path(uri)
    return None if db is None else db.parent / "artifacts"


def creation_lock(uri: str) -> AbstractContextManager:
    """Held while a process opens a sqlite store: MLflow creates and migrates a new database on first access, and
    several processes doing that at once corrupt it. A file lock beside the database; nothing for servers."""
    db = sqlite_path(uri)
    if db is None:
        return nullcontext()
    from filelock import FileLock

    db.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(db.with_name(db.name + ".lock"))


def client(uri: str) -> Any:
    """An MlflowClient on `uri`, its store created (or migrated) under the creation lock."""
    from mlflow.tracking import MlflowClient

    with creation_lock(uri):
        found = MlflowClient(uri)
        found.search_experiments(max_results=1)  # opens (and creates or migrates) the store now, under the lock
    return found


def setup(uri: str, experiment: str) -> str:
    """Point MLflow at `uri`, create the database and `experiment` if needed; returns the experiment id.

    The database is opened under `creation_lock`; a concurrent creator of the same experiment is tolerated.
    """
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # a bar per result read back is noise
    import mlflow
    from mlflow.exceptions import MlflowException

    with creation_lock(uri):
        mlflow.set_tracking_uri(uri)
        found = mlflow.get_experiment_by_name(experiment)
        if found is not None:
            return found.experiment_id
        root = artifact_root(uri)
        location = None if root is None else (root / experiment).resolve().as_uri()
        try:
            # The tag makes the UI open on the runs table rather than the GenAI overview.
            return mlflow.create_experiment(
                experiment, artifact_location=location, tags={"mlflow.experimentKind": "custom_model_development"}
            )
        except MlflowException:
            found = mlflow.get_experiment_by_name(experiment)
            if found is None:
                raise
            return found.experiment_id


def ui_url(host: str, port: int, experiment_id: str | None = None) -> str:
    base = f"http://{host}:{port}/"
    return base + (f"#/experiments/{experiment_id}/runs" if experiment_id else "")
