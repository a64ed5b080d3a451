"""What the service's /metrics really serves, and what a PromQL expression asks of it.

`exposed_series(app)` scrapes a live app after recording one value of every worker metric and
holding one execution, so every family has a sample and its labels show. `violations(expr,
exposed)` lists the metric names and label names an expression uses that the service does not
serve (the chart's alerts and the Grafana dashboard are checked with it).
"""

from __future__ import annotations

import re

from flask import Flask
from prometheus_client.parser import text_string_to_metric_families

from tests.support.hubspot_requests import execution_payload, post_execution
from throttle_app.services import services_of
from throttle_app.telemetry.worker_metrics import WORKER_METRICS

# Labels Prometheus adds to a target scraped through the chart's ServiceMonitor. A `job` label
# the service exposes itself (throttle_jobs_total's RQ job) is renamed `exported_job`.
TARGET_LABELS = frozenset(
    {"job", "namespace", "service", "endpoint", "pod", "container", "instance"}
)
# Metrics issue 12 item 2 (expiry risk) adds on another branch; allowed until that lands, with
# any labels. Once the service serves them, the live scrape covers them and this entry is moot.
ANNOUNCED = frozenset({"throttle_queues_at_risk"})

SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}
_SELECTOR = re.compile(r"\b(throttle_[a-z0-9_]+)\s*(\{[^}]*\})?")
_MATCHER = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"')
_GROUPING = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")


def exposed_series(app: Flask, token: str) -> dict[str, frozenset[str]]:
    """Every series name a scrape of `app` serves -> its label names (as Prometheus stores them
    once scraped). Records one value of each worker metric and stores one execution first."""
    metrics = services_of(app).metrics
    for metric in WORKER_METRICS.values():
        labels = {name: "x" for name in metric.labels}
        if metric.buckets is None:
            metrics.incr(metric.name, labels)
        else:
            with metrics.observe_job("x"):
                pass
    client = app.test_client()
    assert post_execution(client, execution_payload(callback_id="catalog-1")).status_code == 200
    answer = client.get("/metrics", headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 200, answer.data
    series: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(answer.get_data(as_text=True)):
        for suffix in SUFFIXES.get(family.type, ("",)):
            series.setdefault(family.name + suffix, set())
        for sample in family.samples:
            labels = {"exported_job" if name == "job" else name for name in sample.labels}
            series.setdefault(sample.name, set()).update(labels)
    return {name: frozenset(labels) for name, labels in series.items()}


def violations(expr: str, exposed: dict[str, frozenset[str]], target_job: str) -> list[str]:
    """The metrics and labels `expr` uses that the service does not serve (empty: all real).
    An expression must use at least one throttle_ metric, and every selector must select the
    scrape target (`job="<target_job>"`; the service's own job label is `exported_job`), so
    two releases scraped by one Prometheus never mix."""
    known = {**dict.fromkeys(ANNOUNCED, frozenset()), **exposed}
    used = _SELECTOR.findall(expr)
    if not used:
        return [f"no throttle_ metric in {expr!r}"]
    errors, allowed = [], set(TARGET_LABELS) | {"le"}
    for name, _ in used:
        allowed |= known.get(name, set())
    for name, matchers in used:
        if name not in known:
            errors.append(f"{name} is not served by /metrics")
            continue
        labels = exposed.get(name)  # None: announced, labels unknown yet
        found = _MATCHER.findall(matchers)
        if ("job", "=", target_job) not in found:
            errors.append(f"{name} is not scoped to the target (job={target_job!r})")
        for label, op, value in found:
            if labels is not None and label not in labels | TARGET_LABELS:
                errors.append(f"{name} has no label {label}")
            if label == "job" and (op, value) != ("=", target_job):
                errors.append(f"{name}: job{op}{value!r} (the target is {target_job!r})")
    for grouping in _GROUPING.findall(expr):
        for label in filter(None, (part.strip() for part in grouping.split(","))):
            if label not in allowed:
                errors.append(f"no metric in the expression has the label {label}")
    return errors
