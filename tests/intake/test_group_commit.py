"""GroupCommitter under trouble: callers that timed out, a stalled writer, a writer that died.

The batching itself (one statement per batch, answers after the commit) is tested through the
admission in test_admission.py; these drive the committer with a plain batch function.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

import pytest

from throttle_app.intake.group_commit import CommitTimeout, GroupCommitter, Overloaded


class StallingWriter:
    """Records every batch; the first batch waits until `release` is set."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.release = threading.Event()
        self.started = threading.Event()

    def __call__(self, items: Sequence[str]) -> list[str]:
        self.batches.append(list(items))
        self.started.set()
        if len(self.batches) == 1:
            self.release.wait(10)
        return [f"stored {item}" for item in items]


def submit_in_thread(committer: GroupCommitter, item: str, timeout: float) -> dict:
    outcome: dict = {}

    def run() -> None:
        try:
            outcome["result"] = committer.submit(item, timeout=timeout)
        except Exception as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    outcome["thread"] = thread
    return outcome


def test_an_item_whose_caller_timed_out_is_not_written_later():
    writer = StallingWriter()
    committer = GroupCommitter(writer, writers=1)
    try:
        first = submit_in_thread(committer, "first", timeout=10)
        assert writer.started.wait(5)  # the writer is stuck in the first batch
        late = submit_in_thread(committer, "late", timeout=0.2)
        late["thread"].join(5)
        assert isinstance(late["error"], CommitTimeout)  # answered 503 already
        writer.release.set()
        first["thread"].join(5)
        assert committer.submit("next", timeout=5) == "stored next"
    finally:
        committer.close()
    assert writer.batches == [["first"], ["next"]]  # "late" never reached the database


def test_a_full_queue_refuses_at_once_instead_of_growing():
    writer = StallingWriter()
    committer = GroupCommitter(writer, writers=1, max_pending=2)
    try:
        first = submit_in_thread(committer, "first", timeout=10)
        assert writer.started.wait(5)
        waiting = [submit_in_thread(committer, f"w{n}", timeout=10) for n in range(2)]
        deadline = time.monotonic() + 5
        while len(committer._pending) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        started = time.monotonic()
        with pytest.raises(Overloaded):
            committer.submit("one too many", timeout=10)
        assert time.monotonic() - started < 0.5
        writer.release.set()
        for outcome in [first, *waiting]:
            outcome["thread"].join(5)
            assert outcome["result"].startswith("stored ")
    finally:
        committer.close()


class WriterKilled(BaseException):
    """Stands for gevent's GreenletExit: not an Exception."""


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_writer_that_died_is_replaced_and_its_callers_hear_of_it():
    calls: list[list[str]] = []

    def write(items: Sequence[str]) -> list[str]:
        calls.append(list(items))
        if len(calls) == 1:
            raise WriterKilled
        return [f"stored {item}" for item in items]

    committer = GroupCommitter(write, writers=1)
    try:
        with pytest.raises(CommitTimeout):
            committer.submit("first", timeout=5)
        assert committer.submit("second", timeout=5) == "stored second"
    finally:
        committer.close()
