"""MLflow tracking: which store, where artifacts go, the experiment, created before any run starts, and the view of
its runs table that `advbridge ui` links to.

Default store: `sqlite:///mlruns/mlflow.db` with artifacts in `mlruns/artifacts/` (MLflow 3.x raises on
the file store). A scenario's `tracking.uri`, else $MLFLOW_TRACKING_URI, overrides it; another sqlite file
gets an `artifacts/` folder beside it; an http(s) URI uses the server's artifact store.
"""

from __future__ import annotations

import json
import os
import time
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

from bridge.core.errors import ScenarioError

DEFAULT_URI = "sqlite:///mlruns/mlflow.db"


def resolve_uri(scenario_uri: str | None = None) -> str:
    """The tracking URI in force: scenario field, else the environment, else the project default.

    Relative sqlite paths are made absolute so that a server or worker started elsewhere finds them.
    """
    uri = scenario_uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_URI
    db = sqlite_path(uri)
    return f"sqlite:///{db.resolve()}" if db is not None else uri


SCHEMES = ("sqlite:///", "http://", "https://", "postgresql", "mysql", "mssql")
SQLITE_HEADER = b"SQLite format 3\x00"


def uri_problem(uri: str) -> str | None:
    """Why `uri` cannot be used as a tracking store from here, or None; writes nothing.

    A sqlite file must be a SQLite database (or not exist yet, in a folder that can be created and written); a
    server must answer its health check; a database server (postgresql, mysql, mssql) is taken as written.
    """
    allowed = "sqlite:///path/to/mlflow.db, http(s)://server, or a postgresql/mysql/mssql database URI"
    if not uri.startswith(SCHEMES):
        return f"{uri}: not a tracking store URI; allowed: {allowed}"
    db = sqlite_path(uri)
    if db is not None:
        return _sqlite_problem(db)
    if uri.startswith("http"):
        return _server_problem(uri)
    return None


def _sqlite_problem(db: Path) -> str | None:
    if db.is_dir():
        return f"{db} is a folder; give the database file, e.g. sqlite:///{db / 'mlflow.db'}"
    if db.exists():
        with db.open("rb") as f:
            head = f.read(len(SQLITE_HEADER))
        return None if head in (SQLITE_HEADER, b"") else f"{db} is not a SQLite database"
    folder = db.parent
    while not folder.exists():
        folder = folder.parent
    if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
        return f"{db} cannot be created: {folder} is not a writable folder"
    return None


def _server_problem(uri: str) -> str | None:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=5):
            return None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        return f"{uri}: the tracking server does not answer ({getattr(exc, 'reason', exc)})"


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
    # MLflow's store imported before the lock rather than on first access under it: a second per process that a
    # crowd of processes opening the store at once would otherwise spend in line.
    import mlflow.store.tracking.sqlalchemy_store  # noqa: F401
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
        location = _artifact_location(uri, experiment)
        try:
            # The first tag makes the UI open on the runs table rather than the GenAI overview; the second is the
            # runs table's view that shows what a reviewer compares (see `key_view`).
            tags = {"mlflow.experimentKind": "custom_model_development", VIEW_TAG_PREFIX + KEY_VIEW: key_view()}
            return mlflow.create_experiment(experiment, artifact_location=location, tags=tags)
        except MlflowException:
            found = mlflow.get_experiment_by_name(experiment)
            if found is None:
                raise
            return found.experiment_id


def _artifact_location(uri: str, experiment: str) -> str | None:
    """The experiment's artifact folder inside the store's artifact root (None for servers): a name that would
    resolve outside it (`..`, a separator, a link) is refused, whatever checked the name before."""
    root = artifact_root(uri)
    if root is None:
        return None
    location = (root / experiment).resolve()
    if location.parent != root.resolve():
        raise ScenarioError(f"tracking.experiment: {experiment!r} would put its artifacts outside {root}")
    return location.as_uri()


# MLflow 3's runs table shows Source, Models and Dataset and no metric until a user picks columns, and nests each
# study's cells under its parent run, collapsed. A saved view is an experiment tag `mlflow.sharedViewState.ID` that
# the UI applies when its URL says `?viewStateShareKey=ID` (the link its "Share" button makes) and lists under
# "Views". advbridge's selects the columns a reviewer compares and sorts by robust accuracy, the strongest attack
# first; any sort but by creation time also lists every cell on its own row (the UI nests only then).
KEY_VIEW, KEY_VIEW_NAME = "advbridge", "advbridge: key metrics"
VIEW_TAG_PREFIX = "mlflow.sharedViewState."
# Column ids (the UI's): what a reviewer compares, each with a width that shows its header whole.
KEY_COLUMNS = {"metrics.`robust_accuracy`": 150, "metrics.`attack_success_rate`": 170, "metrics.`median_distance`": 160,
               "metrics.`clean_accuracy`": 140, "tags.`status`": 100}  # fmt: skip


def key_view() -> str:
    """The saved view's tag value. MLflow 3.17 reads an envelope whose `state` is the view as JSON; 3.x releases
    before saved views read the view's fields at the top level of the value, so they are there too."""
    # The UI sizes only the columns it is given an order for: the run's name, creation and duration stay first.
    widths = {"attributes.`Run Name`": 380, "runDateAndNestInfo": 160, "duration": 90, **KEY_COLUMNS}
    state = {
        "selectedColumns": list(KEY_COLUMNS),
        "columnOrder": list(widths),
        "columnWidths": widths,
        "orderByKey": "metrics.`robust_accuracy`",
        "orderByAsc": True,
    }
    now = int(time.time() * 1000)
    return json.dumps({"name": KEY_VIEW_NAME, "createdAt": now, "updatedAt": now, "state": json.dumps(state), **state})


def studies_with_key_view(uri: str) -> list[tuple[str, str]]:
    """(name, id) of each experiment holding an advbridge study, the latest study's first; one without the key view
    (made before advbridge wrote it, or the view deleted in the UI) gets it; one with it is left as it is (a view
    saved over it in the UI is kept)."""
    found = []
    mlflow = client(uri)
    for experiment in mlflow.search_experiments():
        latest = mlflow.search_runs(
            [experiment.experiment_id], "tags.`advbridge.role` = 'study'", max_results=1,
            order_by=["attributes.start_time DESC"],
        )  # fmt: skip
        if not latest:
            continue
        if VIEW_TAG_PREFIX + KEY_VIEW not in experiment.tags:
            mlflow.set_experiment_tag(experiment.experiment_id, VIEW_TAG_PREFIX + KEY_VIEW, key_view())
        found.append((latest[0].info.start_time, experiment.name, experiment.experiment_id))
    return [(name, eid) for _, name, eid in sorted(found, reverse=True)]


def ui_url(host: str, port: int, experiment_id: str | None = None, view: str | None = KEY_VIEW) -> str:
    """The UI's address; with an experiment, its runs table in `view` (advbridge's, unless None: as last left)."""
    base = f"http://{host}:{port}/"
    if not experiment_id:
        return base
    return base + f"#/experiments/{experiment_id}/runs" + (f"?viewStateShareKey={view}" if view else "")
