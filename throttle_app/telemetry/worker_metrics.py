"""Worker-side metrics, kept in Redis so every worker process adds to the same numbers.

RQ workers (releases, HubSpot calls, bucket waits, token refreshes, jobs) count here: one hash
per metric, the labels encoded in the field name (`outcome=completed`), HINCRBY / HINCRBYFLOAT.
`RedisMetrics` is the sink the composition root builds and hands to the HubSpot client, the
token store and the jobs; `/metrics` (ops/metrics_scrape.py) reads it back. Web-side counters
are in web_metrics.py.

Counting never fails business code: Redis and other errors are swallowed and logged at debug
level (a wrong metric name or label set at warning level: that is a bug to fix).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import parse_qsl, urlencode

import redis
from prometheus_client.utils import floatToGoString

from throttle_app.telemetry.queue_releases import add_releases

log = logging.getLogger(__name__)

PREFIX = "throttle_"
REDIS_PREFIX = "throttle:metrics:"
JOB_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0)
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

    def __init__(self, connection: redis.Redis) -> None:
        self._connection = connection

    def incr(
        self, name: str, labels: Mapping[str, object] | None = None, amount: float = 1
    ) -> None:
        """Add `amount` (> 0) to a counter, e.g. incr("releases_total", {"outcome": "failed"})."""
        self._write(lambda pipe: self._add(pipe, name, labels or {}, amount))

    def count_releases(self, report: ReleaseCounts, queue_id: int | None = None) -> None:
        """Count a release job's outcomes (its ReleaseReport) in one round trip, and its queue's
        releases in this minute (queue_releases.py) when the queue is given."""

        def add(pipe: Any) -> None:
            for outcome in RELEASE_OUTCOMES:
                self._add(pipe, "releases_total", {"outcome": outcome}, getattr(report, outcome))
            if queue_id is not None:
                add_releases(pipe, queue_id, report.completed, time.time())

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
        pipe = self._connection.pipeline(transaction=False)
        for metric in WORKER_METRICS.values():
            pipe.hgetall(metric.key)
        raw = pipe.execute()
        return {
            metric.name: {k.decode(): float(v) for k, v in fields.items()}
            for metric, fields in zip(WORKER_METRICS.values(), raw, strict=True)
        }

    def _write(self, commands: Callable[[Any], None]) -> None:
        pipe = self._connection.pipeline(transaction=False)
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
