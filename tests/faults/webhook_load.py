"""A steady, bounded load of signed execution requests, sent from a process of its own (as
HubSpot delivers enrollments), with every delivery attempt and its answer recorded.

The load runs in a spawned process so that its threads never compete for the test process's
GIL with the fake HubSpot and the TCP proxy, whose timings the tests measure. Only loopback
addresses are targets; the rate, the concurrency and the duration are bounded.

With `redeliver`, an execution that was not acknowledged (a 5xx, a refused or reset connection,
a timeout) is delivered again after its Retry-After (capped), like HubSpot, until `settle`
seconds after the load ends.
"""

from __future__ import annotations

import heapq
import json
import multiprocessing
import threading
import time
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass

import requests

from tests.support.hubspot_requests import execution_payload, signed_headers
from tests.support.release_helpers import PORTAL

ACTION_PATH = "/api/hubspot/action"
REQUEST_TIMEOUT_SECONDS = 10.0
MAX_RATE_PER_SECOND = 500.0  # a bound on any plan: this is a fault test, not a flood


@dataclass(frozen=True)
class QueueLoad:
    """Executions for one queue: callback ids `<prefix>-<n>`, arriving `per_second`."""

    prefix: str
    workflow_id: int
    max_throughput: int
    seconds: int
    per_second: float
    count: int | None = None  # stop after this many (None: for the whole duration)


@dataclass(frozen=True)
class LoadPlan:
    base: str
    queues: tuple[QueueLoad, ...]
    duration: float
    start_at: float  # time.time() of the first delivery
    concurrency: int = 16
    redeliver: bool = False
    settle: float = 0.0
    retry_cap_seconds: float = 2.0


@dataclass(frozen=True)
class Delivery:
    """One delivery attempt: `status` 0 means no HTTP answer (`error` says what happened)."""

    callback_id: str
    started: float
    finished: float
    status: int
    retry_after: str | None = None
    error: str | None = None


def body_for(queue: QueueLoad, n: int) -> bytes:
    payload = execution_payload(
        callback_id=f"{queue.prefix}-{n}",
        portal_id=PORTAL,
        workflow_id=queue.workflow_id,
        max_throughput=str(queue.max_throughput),
        time_value=str(queue.seconds),
        period="seconds",
    )
    return json.dumps(payload).encode()


def run_load(plan: LoadPlan) -> list[Delivery]:
    """Send the plan's executions at their rates; return every attempt (in this process)."""
    assert sum(q.per_second for q in plan.queues) <= MAX_RATE_PER_SECOND
    assert plan.base.startswith("http://127.0.0.1:")
    session = requests.Session()
    adapter = requests.adapters.HTTPAdapter(pool_maxsize=plan.concurrency, max_retries=0)
    session.mount("http://", adapter)
    url = plan.base + ACTION_PATH
    deliveries: list[Delivery] = []
    lock = threading.Lock()
    # (due time.time(), sequence, callback id, body): first deliveries and redeliveries alike
    due: list[tuple[float, int, str, bytes]] = []
    sequence = 0
    for queue in plan.queues:
        total = int(plan.duration * queue.per_second)
        if queue.count is not None:
            total = min(total, queue.count)
        for n in range(total):
            at = plan.start_at + n / queue.per_second
            due.append((at, sequence, f"{queue.prefix}-{n}", body_for(queue, n)))
            sequence += 1
    heapq.heapify(due)
    end = plan.start_at + plan.duration + plan.settle

    def deliver(callback_id: str, body: bytes) -> None:
        nonlocal sequence
        started = time.time()
        try:
            answer = session.post(
                url,
                data=body,
                headers=signed_headers(body, url=url),
                timeout=REQUEST_TIMEOUT_SECONDS,
            )
            record = Delivery(
                callback_id,
                started,
                time.time(),
                answer.status_code,
                answer.headers.get("Retry-After"),
            )
        except requests.RequestException as exc:
            record = Delivery(callback_id, started, time.time(), 0, error=type(exc).__name__)
        with lock:
            deliveries.append(record)
            if plan.redeliver and record.status != 200:
                wait = _retry_wait(record.retry_after, plan.retry_cap_seconds)
                sequence += 1
                heapq.heappush(due, (time.time() + wait, sequence, callback_id, body))

    with ThreadPoolExecutor(plan.concurrency) as pool:
        running: set[Future] = set()
        while True:
            now = time.time()
            running = {f for f in running if not f.done()}
            with lock:
                next_due = due[0][0] if due else None
                ready = next_due is not None and next_due <= min(now, end)
                # bounded: at most `concurrency` deliveries wait for a thread
                item = heapq.heappop(due) if ready and len(running) < 2 * plan.concurrency else None
            if item is not None:
                running.add(pool.submit(deliver, item[2], item[3]))
                continue
            if not running and (next_due is None or next_due > end):
                break
            time.sleep(0.002)
    return deliveries


def _retry_wait(retry_after: str | None, cap: float) -> float:
    try:
        return min(max(float(retry_after or 1), 0.2), cap)
    except ValueError:
        return 1.0


class LoadProcess:
    """`run_load` in a spawned process: `start()` returns at once, `result()` waits."""

    def __init__(self, plan: LoadPlan) -> None:
        self.plan = plan
        self._pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
        self._future: Future | None = None

    def start(self) -> LoadProcess:
        self._future = self._pool.submit(run_load, self.plan)
        return self

    def result(self, timeout: float | None = None) -> list[Delivery]:
        assert self._future is not None
        if timeout is None:
            timeout = self.plan.start_at - time.time() + self.plan.duration + self.plan.settle + 60
        try:
            return self._future.result(timeout=timeout)
        finally:
            self.close()

    def close(self) -> None:
        """Stop the load process (also when the test failed before `result`)."""
        for process in list((getattr(self._pool, "_processes", None) or {}).values()):
            if process.is_alive():
                process.kill()
        self._pool.shutdown(wait=True, cancel_futures=True)
