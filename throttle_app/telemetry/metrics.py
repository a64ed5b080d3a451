"""Prometheus metrics: what is counted where. `/metrics` (metrics_scrape.py) puts it together.

Three sources, one exposition:

- Web processes (gunicorn workers) count webhooks and time admission with prometheus_client
  metrics. Under gunicorn these use multiprocess mode (PROMETHEUS_MULTIPROC_DIR, set up by
  gunicorn.conf.py), so a scrape answered by any worker sums every worker. They are created on
  first use, after the fork, and never in an RQ worker.
- RQ workers (releases, HubSpot calls, bucket waits, token refreshes, jobs) count in Redis:
  one hash per metric, the labels encoded in the field name (`outcome=completed`), HINCRBY /
  HINCRBYFLOAT. `worker_metrics` is that API; any process with an app context may use it.
- The backlog per queue is read from PostgreSQL at scrape time, under a short statement timeout.

Counting never fails business code: Redis and other errors are swallowed and logged at debug
level (a wrong metric name or label set at warning level: that is a bug to fix).
"""

from __future__ import annotations

import atexit
import bisect
import functools
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import parse_qsl, urlencode

import redis
from flask import Response, current_app, g
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.utils import floatToGoString
from werkzeug.exceptions import HTTPException

from throttle_app.deferred_flush import DeferredFlush

log = logging.getLogger(__name__)

PREFIX = "throttle_"
REDIS_PREFIX = "throttle:metrics:"
ADMISSION_BUCKETS = (0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
JOB_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0)
# Webhook answers other than 200 (a 200 is "block" or "replay_<state>", see note_webhook_answer).
WEBHOOK_OUTCOMES = {
    400: "invalid",
    401: "bad_signature",
    409: "conflict",
    413: "too_large",
    500: "error",
    503: "unavailable",
}
RELEASE_OUTCOMES = ("completed", "failed", "retried", "given_back")


@dataclass(frozen=True)
class WorkerMetric:
    """A metric kept in Redis: a counter, or a histogram when `buckets` is set."""

    name: str
    help: str
    labels: tuple[str, ...] = ()
    buckets: tuple[float, ...] | None = None

    @property
    def key(self) -> str:
        return REDIS_PREFIX + self.name


WORKER_METRICS: dict[str, WorkerMetric] = {
    m.name: m
    for m in (
        WorkerMetric("releases_total", "Executions handled by release jobs.", ("outcome",)),
        WorkerMetric(
            "hubspot_calls_total",
            "HubSpot API calls by HTTP status (or timeout, connection_error).",
            ("status",),
        ),
        WorkerMetric("hubspot_rate_limited_total", "HubSpot 429 answers."),
        WorkerMetric(
            "hubspot_rate_limited_seconds_total", "Seconds portal buckets were blocked by 429s."
        ),
        WorkerMetric(
            "bucket_waits_total",
            "Portal bucket token waits: inline (slept, then sent) or deferred (work given back).",
            ("result",),
        ),
        WorkerMetric("bucket_wait_seconds_total", "Seconds slept waiting for bucket tokens."),
        WorkerMetric("token_refreshes_total", "OAuth token refresh calls by result.", ("result",)),
        WorkerMetric("jobs_total", "RQ jobs by job and result (ok, failed).", ("job", "result")),
        WorkerMetric("job_duration_seconds", "RQ job durations.", ("job",), buckets=JOB_BUCKETS),
    )
}


def _field(labels: Mapping[str, object]) -> str:
    """Labels as a hash field name: `outcome=completed`, `job=release&result=ok`."""
    return urlencode(sorted((k, str(v)) for k, v in labels.items()))


def label_values(metric: WorkerMetric, field: str) -> list[str]:
    """The metric's label values stored in a field name (the inverse of `_field`)."""
    values = dict(parse_qsl(field, keep_blank_values=True))
    return [values.get(name, "") for name in metric.labels]


class ReleaseCounts(Protocol):
    completed: int
    failed: int
    retried: int
    given_back: int


class RedisMetrics:
    """Counters and histograms in Redis, shared by every worker process; never raises."""

    def __init__(self, connection: Callable[[], redis.Redis]) -> None:
        self._connection = connection

    def incr(
        self, name: str, labels: Mapping[str, object] | None = None, amount: float = 1
    ) -> None:
        """Add `amount` (> 0) to a counter, e.g. incr("releases_total", {"outcome": "failed"})."""
        self._write(lambda pipe: self._add(pipe, name, labels or {}, amount))

    def count_releases(self, report: ReleaseCounts) -> None:
        """Count a release job's outcomes (its ReleaseReport) in one round trip."""

        def add(pipe: Any) -> None:
            for outcome in RELEASE_OUTCOMES:
                self._add(pipe, "releases_total", {"outcome": outcome}, getattr(report, outcome))

        self._write(add)

    @contextmanager
    def observe_job(self, job: str) -> Iterator[None]:
        """Time the block as one run of `job`; an exception counts it as failed (and propagates)."""
        started, result = time.monotonic(), "failed"
        try:
            yield
            result = "ok"
        finally:
            seconds = time.monotonic() - started

            def add(pipe: Any) -> None:
                self._add(pipe, "jobs_total", {"job": job, "result": result}, 1)
                self._observe(pipe, "job_duration_seconds", {"job": job}, seconds)

            self._write(add)

    def hubspot_call(self, status: int | str) -> None:
        self.incr("hubspot_calls_total", {"status": status})

    def rate_limited(self, retry_after: float) -> None:
        def add(pipe: Any) -> None:
            self._add(pipe, "hubspot_rate_limited_total", {}, 1)
            self._add(pipe, "hubspot_rate_limited_seconds_total", {}, retry_after)

        self._write(add)

    def bucket_waited(self, slept: float, acquired: bool) -> None:
        """After a bucket acquire: nothing when a token came at once, else count the wait."""
        if slept <= 0 and acquired:
            return

        def add(pipe: Any) -> None:
            self._add(pipe, "bucket_waits_total", {"result": "inline" if acquired else "deferred"})
            self._add(pipe, "bucket_wait_seconds_total", {}, slept)

        self._write(add)

    def read(self) -> dict[str, dict[str, float]]:
        """Every worker metric's stored fields (raises on Redis errors: the scrape reports it)."""
        pipe = self._connection().pipeline(transaction=False)
        for metric in WORKER_METRICS.values():
            pipe.hgetall(metric.key)
        raw = pipe.execute()
        return {
            metric.name: {k.decode(): float(v) for k, v in fields.items()}
            for metric, fields in zip(WORKER_METRICS.values(), raw, strict=True)
        }

    def _write(self, commands: Callable[[Any], None]) -> None:
        try:
            pipe = self._connection().pipeline(transaction=False)
        except Exception as exc:  # e.g. no app context: nothing to count into
            log.debug("worker metrics not recorded: %s: %s", type(exc).__name__, exc)
            return
        try:
            commands(pipe)
        except (KeyError, ValueError) as exc:  # a wrong metric name or labels: a bug, say so
            log.warning("worker metric misused: %s", exc)
            return
        try:
            if len(pipe):
                pipe.execute()
        except Exception as exc:  # a Redis hiccup must never fail a release
            log.debug("worker metrics not recorded: %s: %s", type(exc).__name__, exc)

    @staticmethod
    def _check(name: str, labels: Mapping[str, object], histogram: bool) -> WorkerMetric:
        metric = WORKER_METRICS[name]
        if (metric.buckets is not None) != histogram or set(labels) != set(metric.labels):
            raise ValueError(f"metric {name} takes labels {metric.labels}, got {sorted(labels)}")
        return metric

    def _add(self, pipe: Any, name: str, labels: Mapping[str, object], amount: float = 1) -> None:
        metric = self._check(name, labels, histogram=False)
        if amount <= 0:
            return
        if isinstance(amount, int):
            pipe.hincrby(metric.key, _field(labels), amount)
        else:
            pipe.hincrbyfloat(metric.key, _field(labels), amount)

    def _observe(self, pipe: Any, name: str, labels: Mapping[str, object], value: float) -> None:
        metric = self._check(name, labels, histogram=True)
        bound = next((b for b in metric.buckets or () if value <= b), float("inf"))
        pipe.hincrby(metric.key, f"b:{floatToGoString(bound)}:{_field(labels)}", 1)
        pipe.hincrbyfloat(metric.key, f"s:{_field(labels)}", value)


def _current_redis() -> redis.Redis:
    from throttle_app.extensions import redis_client

    return redis_client()


worker_metrics = RedisMetrics(_current_redis)


# --- Web processes: prometheus_client metrics (multiprocess under gunicorn) ---------------------

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
    hottest path (about 20-30 us of web CPU per request in scripts/bench_intake.py runs with and
    without it on 2026-11-28; those runs were not recorded in the README). Here a request costs
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
