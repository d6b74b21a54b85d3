"""Which parent run a study continues, and what changed since it started.

`--resume` continues the most recent unfinished study of the scenario in the store whose plan is the same (the
same task keys); `--resume RUN_ID` continues that one, whatever changed, and says which tasks changed. A parent
whose driver is alive is never taken over.
"""

from __future__ import annotations

import json
from typing import Any

from bridge.core.errors import ScenarioError
from bridge.engine import owner
from bridge.engine.store import OWNER, ROLE, Store, is_alive
from bridge.engine.task import Task
from bridge.runner.inputs import PLAN

STUDY = "advbridge.study"  # tag: a hash of the study's task keys (its identity)
SHOWN = 4  # task labels named per kind of change


def planned(store: Store, run_id: str) -> list[dict[str, Any]]:
    """The tasks the parent's plan recorded (`study/plan.json`), [] when it has none."""
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        try:
            path = store.client.download_artifacts(run_id, PLAN, tmp)
        except Exception:
            return []
        return json.loads(Path(path).read_text())["tasks"]


def changes(before: list[dict[str, Any]], tasks: list[Task]) -> str:
    """What differs between a study's recorded plan and `tasks` (empty when nothing does)."""
    old = {d["key"]: d["label"] for d in before}
    new = {t.key: t.label for t in tasks}
    added = [label for key, label in new.items() if key not in old]
    removed = [label for key, label in old.items() if key not in new]
    changed = [label for label in added if label in removed]
    parts = []
    for what, labels in (("changed", changed), ("new", [a for a in added if a not in changed]),
                         ("no longer in the scenario", [r for r in removed if r not in changed])):  # fmt: skip
        if labels:
            more = f", ... {len(labels) - SHOWN} more" if len(labels) > SHOWN else ""
            parts.append(f"{len(labels)} {what} ({', '.join(labels[:SHOWN])}{more})")
    return "; ".join(parts)


def choose(store: Store, scenario: str, resume: bool | str, identity: str, tasks: list[Task]) -> tuple[Any, str]:
    """The parent run to continue, and what changed since it started ('' if nothing); (None, '') for a new study.

    Raises ScenarioError when the named run cannot be resumed, or when the unfinished study is of another plan.
    """
    if isinstance(resume, str):
        try:
            run = store.get(resume)
        except Exception:
            raise ScenarioError(f"--resume {resume}: no such run in {store.uri}") from None
        tags = run.data.tags
        if run.info.experiment_id != store.experiment_id or tags.get(ROLE) != "study":
            raise ScenarioError(f"--resume {resume}: not a study of experiment {store.experiment_id} in {store.uri}")
        if tags.get("scenario") != scenario:
            raise ScenarioError(f"--resume {resume}: a study of scenario {tags.get('scenario')}, not {scenario}")
        if run.info.status == "RUNNING" and is_alive(run):
            raise ScenarioError(f"--resume {resume}: still running ({owner.describe(tags[OWNER])})")
        return run, changes(planned(store, resume), tasks) if tags.get(STUDY) != identity else ""
    unfinished = [r for r in store.studies(scenario) if r.info.status != "FINISHED" and not
                  (r.info.status == "RUNNING" and is_alive(r))]  # fmt: skip
    same = [r for r in unfinished if r.data.tags.get(STUDY) == identity]
    if same:
        return same[0], ""
    if unfinished:
        latest = unfinished[0]
        diff = changes(planned(store, latest.info.run_id), tasks)
        raise ScenarioError(
            f"--resume: no unfinished study of {scenario} has this plan; the latest, {latest.info.run_id}, differs: "
            f"{diff}; resume it anyway with --resume {latest.info.run_id}"
        )
    return None, ""
