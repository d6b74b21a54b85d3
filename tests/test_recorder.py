"""The writer thread that records results: every write done, in order, before the block is left (also when the
study stops on an error), at most `depth` waiting, and a failed write stops the study with its own error."""

from __future__ import annotations

import threading
import time

import pytest

from bridge.runner.recorder import Recorder


def test_writes_run_off_the_callers_thread_in_order_and_all_finish_at_exit() -> None:
    done, threads = [], set()

    def write(i: int) -> None:
        time.sleep(0.02)
        threads.add(threading.current_thread().name)
        done.append(i)

    with Recorder(depth=6) as recorder:
        started = time.perf_counter()
        for i in range(6):
            recorder.submit(lambda i=i: write(i))
        handed_over = time.perf_counter() - started
    assert done == list(range(6))
    assert threads == {"advbridge-recorder_0"}
    assert handed_over < 0.06  # nothing waited for: written in turn, the six would take 0.12 s


def test_at_most_depth_writes_wait() -> None:
    gate, waiting = threading.Event(), []
    with Recorder(depth=2) as recorder:
        for _ in range(2):
            recorder.submit(gate.wait)
        blocked = threading.Thread(target=lambda: recorder.submit(lambda: waiting.append("third")))
        blocked.start()
        blocked.join(0.1)
        assert blocked.is_alive()  # the third hand-over waits for room
        gate.set()
        blocked.join(5)
    assert waiting == ["third"]


def test_a_failed_write_stops_the_study_with_its_error() -> None:
    def fail() -> None:
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"), Recorder(depth=1) as recorder:
        recorder.submit(fail)
        recorder.submit(lambda: None)  # waits for the failed one, which raises here


def test_an_error_in_the_study_still_writes_what_finished() -> None:
    done = []
    with pytest.raises(KeyboardInterrupt), Recorder() as recorder:
        recorder.submit(lambda: (time.sleep(0.05), done.append("written")))
        raise KeyboardInterrupt
    assert done == ["written"]
