"""One `/metrics` scrape: web metrics of every gunicorn worker, worker metrics from Redis, and
the backlog per queue and the number of queues at expiry risk (release/risk_scan.py) from
PostgreSQL (read now, in one transaction under a short statement timeout).

A source that cannot be read leaves its metrics out of this scrape and reports
`throttle_metrics_source_up{source=...} 0`; the scrape itself still answers.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import redis
from prometheus_client import CollectorRegistry, multiprocess
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

from throttle_app.release.risk_scan import queues_at_risk
from throttle_app.telemetry.web_metrics import (
    PREFIX,
    WEB_REGISTRY,
    flush_web_metrics,
    multiprocess_mode,
    web_metrics,
)
from throttle_app.telemetry.worker_metrics import WORKER_METRICS, RedisMetrics, label_values

log = logging.getLogger(__name__)

# Queues with a backlog only: a drained queue's series ends (Prometheus marks it stale). The
# last column says whether the queue's portal can be released to: NULL when it is installed and
# connected, else 'disconnected' or 'not_installed' (its executions wait for an install).
BACKLOG_SQL = text(
    """
    SELECT e.queue_id, q.portal_id, q.workflow_id, q.action_id, e.state, count(*),
           CASE WHEN t.id IS NULL THEN 'not_installed'
                WHEN t.disconnected_at IS NOT NULL THEN 'disconnected' END
    FROM action_executions e JOIN throttle_queues q ON q.id = e.queue_id
    LEFT JOIN oauth_tokens t ON t.portal_id = q.portal_id
    WHERE e.state IN ('pending', 'claimed')
    GROUP BY e.queue_id, q.portal_id, q.workflow_id, q.action_id, e.state, t.id, t.disconnected_at
    ORDER BY e.queue_id, e.state
    """
)
BACKLOG_STATES = ("pending", "claimed")


def scrape_registry(
    engine: Engine,
    connection: redis.Redis,
    timeout_ms: int,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> CollectorRegistry:
    """A registry for one scrape. Under gunicorn (multiprocess mode) the web metrics are summed
    over every worker's files; otherwise they are this process's own."""
    registry = CollectorRegistry(auto_describe=False)
    web_metrics()  # every webhook series exists, at 0, from the first scrape on
    flush_web_metrics()  # this process's latest counts; other workers flush within a second
    if multiprocess_mode():
        multiprocess.MultiProcessCollector(registry)
    else:
        registry.register(WEB_REGISTRY)
    registry.register(ScrapeCollector(engine, connection, timeout_ms, clock))
    return registry


class ScrapeCollector(Collector):
    """Worker metrics from Redis and the backlog from PostgreSQL, read at collect time."""

    def __init__(
        self,
        engine: Engine,
        connection: redis.Redis,
        timeout_ms: int,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._engine = engine
        self._metrics = RedisMetrics(connection)
        self._timeout_ms = timeout_ms
        self._clock = clock

    def collect(self) -> Iterator[Any]:
        up = GaugeMetricFamily(
            PREFIX + "metrics_source_up",
            "1 if this scrape read the source (redis: worker metrics, postgres: backlog).",
            labels=("source",),
        )
        try:
            stored = self._metrics.read()
        except Exception as exc:
            log.warning("metrics: worker metrics unavailable: %s", type(exc).__name__)
            stored = None
        up.add_metric(["redis"], 0 if stored is None else 1)
        if stored is not None:
            yield from worker_families(stored)
        try:
            rows, at_risk = self._backlog()
        except Exception as exc:
            log.warning("metrics: backlog unavailable: %s", type(exc).__name__)
            rows = None
        up.add_metric(["postgres"], 0 if rows is None else 1)
        if rows is not None:
            yield from backlog_families(rows)
            yield GaugeMetricFamily(
                PREFIX + "queues_at_risk",
                "Queues whose backlog would not be released before the oldest hold ends.",
                value=at_risk,
            )
        yield up

    def _backlog(self) -> tuple[list[tuple], int]:
        with self._engine.connect() as conn, conn.begin():
            conn.execute(
                text("SELECT set_config('statement_timeout', :timeout, true)"),
                {"timeout": f"{self._timeout_ms}ms"},
            )
            rows = [tuple(row) for row in conn.execute(BACKLOG_SQL)]
            with Session(bind=conn) as session:
                at_risk = len(queues_at_risk(session, self._clock()))
            return rows, at_risk


def worker_families(stored: dict[str, dict[str, float]]) -> Iterator[Any]:
    """Prometheus families from RedisMetrics.read() (histogram buckets made cumulative)."""
    for metric in WORKER_METRICS.values():
        fields = stored.get(metric.name, {})
        if metric.buckets is None:
            family = CounterMetricFamily(PREFIX + metric.name, metric.help, labels=metric.labels)
            for field, value in sorted(fields.items()):
                family.add_metric(label_values(metric, field), value)
            yield family
            continue
        family = HistogramMetricFamily(PREFIX + metric.name, metric.help, labels=metric.labels)
        bounds = [floatToGoString(b) for b in (*metric.buckets, float("inf"))]
        for sum_field in sorted(f for f in fields if f.startswith("s:")):
            series = sum_field[2:]
            running, buckets = 0.0, []
            for bound in bounds:
                running += fields.get(f"b:{bound}:{series}", 0.0)
                buckets.append((bound, running))
            family.add_metric(label_values(metric, series), buckets, fields[sum_field])
        yield family


def backlog_families(rows: list[tuple]) -> Iterator[Any]:
    """Rows of BACKLOG_SQL as a per-queue gauge, an all-queues total (always present) and the
    backlog of each portal that cannot be released to (disconnected or never installed)."""
    per_queue = GaugeMetricFamily(
        PREFIX + "backlog_executions",
        "Executions held per queue (queues with a backlog), by state.",
        labels=("queue_id", "portal_id", "workflow_id", "action_id", "state"),
    )
    totals = dict.fromkeys(BACKLOG_STATES, 0)
    stranded: dict[tuple[str, str], int] = {}
    for queue_id, portal_id, workflow_id, action_id, state, count, unreachable in rows:
        labels = [str(queue_id), str(portal_id), str(workflow_id), str(action_id), state]
        per_queue.add_metric(labels, count)
        totals[state] = totals.get(state, 0) + count
        if unreachable:
            key = (str(portal_id), unreachable)
            stranded[key] = stranded.get(key, 0) + count
    total = GaugeMetricFamily(
        PREFIX + "backlog_executions_all_queues",
        "Executions held in all queues, by state.",
        labels=("state",),
    )
    for state, count in totals.items():
        total.add_metric([state], count)
    disconnected = GaugeMetricFamily(
        PREFIX + "disconnected_portal_backlog_executions",
        "Executions held (pending or claimed) for a portal that is disconnected or was never"
        " installed: nothing releases them until the app is installed again.",
        labels=("portal_id", "reason"),
    )
    for (portal_id, reason), count in sorted(stranded.items()):
        disconnected.add_metric([portal_id, reason], count)
    yield per_queue
    yield total
    yield disconnected
