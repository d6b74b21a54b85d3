"""Who runs a study: the owner of a parent run, and whether that owner is still alive.

MLflow never closes a run whose process died (`kill -9`, a lost machine): it stays RUNNING forever. So a study's
parent run names its owner (host, boot, process id and the process's start time, which a reused pid does not
share) and its driver refreshes a heartbeat tag while it runs. On the owner's own machine the process table
answers; elsewhere a heartbeat older than STALE_S means the owner is gone.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

HEARTBEAT_S = 60.0  # how often a live driver refreshes its heartbeat
STALE_S = 10 * HEARTBEAT_S  # a heartbeat this old, seen from another machine, means the driver is gone


def _boot_id() -> str:
    path = Path("/proc/sys/kernel/random/boot_id")
    return path.read_text().strip() if path.is_file() else "-"


def _start_ticks(pid: int) -> str | None:
    """The process's start time in clock ticks since boot ('-' where the system does not say), or None when no
    such process runs (a zombie, killed and not yet reaped, counts as gone)."""
    if Path("/proc/self/stat").is_file():  # Linux: state is the 1st field after the name, start time the 20th
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            return None
        return None if fields[0] in ("Z", "X") else fields[19]
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass
    return "-"


def me() -> str:
    """This process as an owner: host|boot id|pid|start ticks."""
    return f"{socket.gethostname()}|{_boot_id()}|{os.getpid()}|{_start_ticks(os.getpid())}"


def describe(owner: str) -> str:
    host, _, pid, _ = (owner.split("|") + ["", "", "", ""])[:4]
    return f"pid {pid} on {host}"


def alive(owner: str, heartbeat: float | None, now: float | None = None) -> bool:
    """Whether the owner of a run is still running it."""
    host, boot, pid, start = (owner.split("|") + ["", "", "", ""])[:4]
    if host == socket.gethostname() and boot == _boot_id() and pid.isdigit():
        found = _start_ticks(int(pid))
        return found is not None and (found == start or "-" in (found, start))
    return heartbeat is not None and (now or time.time()) - heartbeat < STALE_S


class Heartbeat:
    """Calls `beat(now)` every `every` seconds in a daemon thread until stopped."""

    def __init__(self, beat: Callable[[float], None], every: float = HEARTBEAT_S):
        self._beat, self._every = beat, every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="advbridge-heartbeat", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self._every):
            try:
                self._beat(time.time())
            except Exception:  # a missed beat is not worth stopping the study for
                pass

    def __enter__(self) -> Heartbeat:
        self._beat(time.time())
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
