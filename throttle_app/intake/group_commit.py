"""Group commit: many concurrent requests, one statement and one COMMIT.

Each request hands its item to `GroupCommitter.submit` and waits; a few writer threads (greenlets
once gevent has patched `threading`) take everything that has queued up since their last round
and write it with one call of `write_batch`. Every caller gets its own result only after the
transaction holding its item has committed, so "answer after commit" holds per request while the
commit cost (the fsync) is shared by the whole batch.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

log = logging.getLogger(__name__)
WATCHDOG_SECONDS = 0.1


class CommitTimeout(Exception):
    """The item's batch did not commit before the caller's deadline (it may still commit)."""


class Overloaded(Exception):
    """Too many items are already waiting for a writer: refused at once, not queued."""


class _Slot(Generic[T, R]):
    __slots__ = ("deadline", "done", "error", "item", "result")

    def __init__(self, item: T, deadline: float) -> None:
        self.item = item
        self.deadline = deadline
        self.done = threading.Event()
        self.result: R | None = None
        self.error: BaseException | None = None


class GroupCommitter(Generic[T, R]):
    """Collects concurrent items and writes them in batches through `write_batch`.

    `write_batch(items)` must write all items in one transaction and return one result per item,
    in order; if it raises, every item of that batch gets the exception.
    """

    def __init__(
        self,
        write_batch: Callable[[Sequence[T]], Sequence[R]],
        writers: int = 2,
        max_batch: int = 500,
        name: str = "group-commit",
        max_pending: int = 10_000,
    ) -> None:
        self._write_batch = write_batch
        self._writers = writers
        self._max_batch = max_batch
        self._max_pending = max_pending
        self._name = name
        # deque append/popleft are atomic; one Event wakes the writers (cheap under gevent).
        self._pending: deque[_Slot[T, R]] = deque()
        self._wakeup = threading.Event()
        self._threads: list[threading.Thread] = []
        self._start_lock = threading.Lock()
        self._closed = False
        # Deadlines are enforced by one watchdog for all waiters, not by a timer per request.
        self._waiting: set[_Slot[T, R]] = set()

    def submit(self, item: T, timeout: float) -> R:
        """Queue `item`, wait for its batch to commit, return its result (or raise)."""
        if self._closed:
            raise RuntimeError(f"{self._name} is closed")
        # While the database stalls, callers time out but would keep queueing: bound the queue,
        # so memory stays flat and the backlog a recovered writer meets stays short.
        if len(self._pending) >= self._max_pending:
            raise Overloaded(f"{self._name}: {len(self._pending)} items already waiting")
        if not self._threads:  # started lazily; the watchdog replaces a writer that died
            self._ensure_writers()
        slot: _Slot[T, R] = _Slot(item, time.monotonic() + timeout)
        self._waiting.add(slot)
        self._pending.append(slot)
        self._wakeup.set()
        try:
            slot.done.wait()
        finally:
            self._waiting.discard(slot)
        if slot.error is not None:
            raise slot.error
        return slot.result  # type: ignore[return-value]

    def close(self) -> None:
        """Stop the writers once the items already queued are written."""
        self._closed = True
        self._wakeup.set()
        for thread in self._threads:
            thread.join(timeout=5)
        self._threads.clear()

    def _ensure_writers(self) -> None:
        if self._closed or (self._threads and all(t.is_alive() for t in self._threads)):
            return
        with self._start_lock:
            # Started lazily, so a forking server (gunicorn) starts them in each worker; one that
            # died (killed greenlet, a bug) is replaced, so admission never waits on nobody.
            self._threads = [thread for thread in self._threads if thread.is_alive()]
            running = {thread.name for thread in self._threads}
            targets = [(self._run, f"{self._name}-{n}") for n in range(self._writers)]
            for target, name in [*targets, (self._watch_deadlines, f"{self._name}-watchdog")]:
                if name in running:
                    continue
                thread = threading.Thread(target=target, name=name, daemon=True)
                thread.start()
                self._threads.append(thread)

    def _watch_deadlines(self) -> None:
        """Fail every waiter whose deadline passed (its item may still commit later), and
        replace a writer that died, so items queued meanwhile are not left to time out."""
        while not self._closed:
            time.sleep(WATCHDOG_SECONDS)
            self._ensure_writers()
            now = time.monotonic()
            for slot in list(self._waiting):
                if now > slot.deadline and not slot.done.is_set():
                    slot.error = CommitTimeout(f"{self._name}: no commit before the deadline")
                    slot.done.set()

    def _take_batch(self) -> list[_Slot[T, R]] | None:
        """Wait for items; return up to max_batch of them, or None once closed and drained."""
        batch: list[_Slot[T, R]] = []
        while not batch:
            while not self._pending:
                if self._closed:
                    return None
                self._wakeup.wait(1.0)
                self._wakeup.clear()
            while self._pending and len(batch) < self._max_batch:
                try:
                    slot = self._pending.popleft()
                except IndexError:  # another writer took the last one
                    break
                if not slot.done.is_set():  # its caller already timed out: nobody to answer
                    batch.append(slot)
        return batch

    def _run(self) -> None:
        while True:
            batch = self._take_batch()
            if batch is None:
                return
            try:
                results = self._write_batch([slot.item for slot in batch])
                for slot, result in zip(batch, results, strict=True):
                    if not slot.done.is_set():  # not already failed by the watchdog
                        slot.result = result
            except BaseException as exc:  # every waiter must hear about the failure
                log.warning("%s: batch of %d failed: %r", self._name, len(batch), exc)
                for slot in batch:
                    if not slot.done.is_set():
                        slot.error = exc if isinstance(exc, Exception) else CommitTimeout(repr(exc))
                if not isinstance(exc, Exception):
                    raise  # GreenletExit, SystemExit: this writer ends; the watchdog replaces it
            finally:
                for slot in batch:
                    slot.done.set()
