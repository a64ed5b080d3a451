"""Web-side metrics: webhooks by status and outcome, and admission latency (prometheus_client).

Under gunicorn these use multiprocess mode (PROMETHEUS_MULTIPROC_DIR, set up by gunicorn.conf.py),
so a scrape answered by any worker sums every worker. They are created on first use, after the
fork, and never in an RQ worker. Counting never fails a request.
"""

from __future__ import annotations

import atexit
import bisect
import functools
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

from flask import Response, current_app, g
from prometheus_client import CollectorRegistry, Counter, Histogram
from werkzeug.exceptions import HTTPException

from throttle_app.deferred_flush import DeferredFlush

log = logging.getLogger(__name__)

PREFIX = "throttle_"
ADMISSION_BUCKETS = (0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# Webhook answers other than 200 (a 200 is "block" or "replay_<state>", see note_webhook_answer).
WEBHOOK_OUTCOMES = {
    400: "invalid",
    401: "bad_signature",
    409: "conflict",
    413: "too_large",
    500: "error",
    503: "unavailable",
}

WEB_REGISTRY = CollectorRegistry()


@dataclass(frozen=True)
class _WebMetrics:
    webhooks: Counter
    admission: Histogram


@functools.cache
def web_metrics() -> _WebMetrics:
    """Created on first use, i.e. in a gunicorn worker after the fork (never at import)."""
    webhooks = Counter(
        PREFIX + "webhooks_total",
        "HubSpot execution requests by HTTP status and outcome.",
        ("status", "outcome"),
        registry=WEB_REGISTRY,
    )
    for outcome in ("block", "replay_block", "replay_success", "replay_fail_continue"):
        webhooks.labels("200", outcome)
    for status, outcome in WEBHOOK_OUTCOMES.items():
        webhooks.labels(str(status), outcome)
    admission = Histogram(
        PREFIX + "admission_duration_seconds",
        "Time to store (or find) an execution and have its answer, 503s included.",
        buckets=ADMISSION_BUCKETS,
        registry=WEB_REGISTRY,
    )
    return _WebMetrics(webhooks, admission)


def multiprocess_mode() -> bool:
    return bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))


class _Answer(Protocol):
    state: str | None
    created: bool


def note_webhook_answer(answer: _Answer) -> None:
    """Tell `count_webhook` which 200 this is: a new BLOCK or a replay's answer."""
    g.throttle_webhook_outcome = (
        "block" if answer.created else f"replay_{str(answer.state).lower()}"
    )


class _Tallies:
    """This process's webhook counts and admission latencies, folded into the prometheus
    metrics in bulk: at most FLUSH_SECONDS later, and before every scrape this process answers.

    A multiprocess-mode update costs a lock and an mmap write per value, per request, on the
    hottest path (docs/measurements.md). Here a request costs
    one dict increment under a lock; a flush costs one update per label set and histogram
    bucket.
    """

    FLUSH_SECONDS = 1.0

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._webhooks: dict[tuple[str, str], int] = {}
        self._buckets = [0] * (len(ADMISSION_BUCKETS) + 1)  # the last one is +Inf
        self._sum = 0.0
        self._deferred = DeferredFlush(self.FLUSH_SECONDS, self.flush)

    def webhook(self, status: int, outcome: str) -> None:
        key = (str(status), outcome)
        with self._lock:
            self._webhooks[key] = self._webhooks.get(key, 0) + 1
        self._deferred.request()

    def admission(self, seconds: float) -> None:
        index = bisect.bisect_left(ADMISSION_BUCKETS, seconds)
        with self._lock:
            self._buckets[index] += 1
            self._sum += seconds
        self._deferred.request()

    def flush(self) -> None:
        with self._lock:
            webhooks, self._webhooks = self._webhooks, {}
            buckets, self._buckets = self._buckets, [0] * (len(ADMISSION_BUCKETS) + 1)
            total, self._sum = self._sum, 0.0
        try:
            metrics = web_metrics()
            for (status, outcome), count in webhooks.items():
                metrics.webhooks.labels(status, outcome).inc(count)
            # prometheus_client has no bulk observe: add to the histogram's own values
            # (per-bucket counts and the sum, as Histogram.observe does; pinned version).
            for index, count in enumerate(buckets):
                if count:
                    metrics.admission._buckets[index].inc(count)
            if total:
                metrics.admission._sum.inc(total)
        except Exception as exc:
            log.debug("web metrics not flushed: %s", exc)


_tallies = _Tallies()
flush_web_metrics = _tallies.flush
atexit.register(flush_web_metrics)


def _count_webhook(status: int) -> None:
    try:
        outcome = g.pop("throttle_webhook_outcome", None) if status == 200 else None
        _tallies.webhook(status, outcome or WEBHOOK_OUTCOMES.get(status, "other"))
    except Exception as exc:
        log.debug("webhook not counted: %s", exc)


def count_webhook(view: Callable[..., Any]) -> Callable[..., Any]:
    """Decorate the webhook view: count every answer by status and outcome (413s included)."""

    @functools.wraps(view)
    def counted(*args: Any, **kwargs: Any) -> Any:
        try:
            response = view(*args, **kwargs)
            if not isinstance(response, Response):
                response = current_app.make_response(response)
        except HTTPException as exc:
            _count_webhook(exc.code or 500)
            raise
        except Exception:
            _count_webhook(500)
            raise
        _count_webhook(response.status_code)
        return response

    return counted


@contextmanager
def time_admission() -> Iterator[None]:
    """Observe the block's duration in the admission latency histogram (also when it raises)."""
    started = time.perf_counter()
    try:
        yield
    finally:
        _tallies.admission(time.perf_counter() - started)
