"""The Grafana dashboard the chart ships (helm/throttle/dashboards/throttle.json, rendered into a
ConfigMap by metrics.grafanaDashboard.enabled): a well-formed dashboard whose every query asks
for metrics and labels the service really serves (read from a live /metrics scrape) and parses
as PromQL (promtool, when installed: .ci/run installs it)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.support.promql import exposed_series, violations

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "helm" / "throttle" / "dashboards" / "throttle.json"
TOKEN = "metrics-token-for-tests-0123456789"
# Grafana's built-in variables, and what the promtool check puts in place of every variable.
BUILTIN = {"__rate_interval", "__interval", "__range"}


@pytest.fixture(scope="module")
def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def queries(dashboard: dict) -> list[tuple[str, str]]:
    """(panel title, expr) for every target of every panel, rows' nested panels included."""
    found = []
    for panel in dashboard["panels"]:
        for inner in [panel, *panel.get("panels", [])]:
            found += [(inner["title"], t["expr"]) for t in inner.get("targets", [])]
    return found


def test_it_has_the_essentials_grafana_needs(dashboard):
    assert dashboard["title"] == "Throttle"
    assert re.fullmatch(r"[A-Za-z0-9_-]{1,40}", dashboard["uid"])
    assert isinstance(dashboard["schemaVersion"], int)
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids)) and all(isinstance(i, int) for i in ids)
    for panel in dashboard["panels"]:
        grid = panel["gridPos"]
        assert {"h", "w", "x", "y"} <= grid.keys(), panel["title"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["targets"], f"{panel['title']} has no query"
        refs = [target["refId"] for target in panel["targets"]]
        assert len(refs) == len(set(refs)), panel["title"]
        assert all(target["expr"].strip() for target in panel["targets"]), panel["title"]


def test_panels_do_not_overlap(dashboard):
    cells: dict[tuple[int, int], str] = {}
    for panel in dashboard["panels"]:
        grid = panel["gridPos"]
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps {cells[(x, y)]}"
                cells[(x, y)] = panel["title"]


def test_it_shows_intake_backlog_releases_and_hubspot_outcomes(dashboard):
    exprs = " ".join(expr for _, expr in queries(dashboard))
    assert "rate(throttle_webhooks_total" in exprs  # intake rate
    assert "histogram_quantile(0.95, sum by (le) (rate(throttle_admission_duration" in exprs
    assert "throttle_backlog_executions_all_queues" in exprs
    assert "rate(throttle_releases_total" in exprs
    assert "sum by (status) (max without (pod, instance) (rate(throttle_hubspot_calls" in exprs


def test_every_variable_used_is_defined(dashboard):
    defined = {variable["name"] for variable in dashboard["templating"]["list"]} | BUILTIN
    used = set(re.findall(r"\$\{?(\w+)", json.dumps(dashboard["panels"])))
    assert used <= defined, f"undefined variables: {sorted(used - defined)}"


def test_every_query_uses_metrics_and_labels_the_service_serves(make_app, monkeypatch, dashboard):
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    exposed = exposed_series(make_app(metrics_token=TOKEN), TOKEN)
    wrong = {
        f"{title}: {expr}": errors
        for title, expr in queries(dashboard)
        if (errors := violations(expr, exposed, "$job"))
    }
    assert not wrong, wrong


@pytest.mark.skipif(not shutil.which("promtool"), reason="promtool missing (.ci/run installs it)")
def test_every_query_parses_as_promql(dashboard, tmp_path):
    rules = [
        {"record": f"dashboard:query_{n}", "expr": re.sub(r"\$\{?(\w+)\}?", _value, expr)}
        for n, (_, expr) in enumerate(queries(dashboard))
    ]
    path = tmp_path / "queries.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = subprocess.run(
        ["promtool", "check", "rules", str(path)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def _value(variable: re.Match) -> str:
    """What a Grafana variable becomes for the parse check: a range for the built-ins, a label
    value for the others."""
    return "5m" if variable.group(1) in BUILTIN else "x"
