"""The chart's monitoring objects (metrics.serviceMonitor, .prometheusRule, .grafanaDashboard):
off by default; on, a ServiceMonitor that scrapes the web Service's /metrics with the token
referenced from the release's Secret, alerts on metrics and labels the service really serves
(a live scrape), and the dashboard file in a ConfigMap Grafana's sidecar picks up.
`scripts/check_chart.sh` runs promtool on the rules (check and unit tests)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.ops.test_chart_render import CHART, HELM, of_kind, refused, render
from tests.support.promql import exposed_series, violations

TOKEN = "chart-metrics-token-0123456789abcdef"
ON = (
    f"secrets.metricsToken={TOKEN}",
    "metrics.serviceMonitor.enabled=true",
    "metrics.prometheusRule.enabled=true",
    "metrics.grafanaDashboard.enabled=true",
)
REQUIRED_ALERTS = {
    "ThrottleQueuesAtRisk",
    "ThrottlePortalDisconnectedWithBacklog",
    "ThrottleHubSpotRateLimited",
    "ThrottleHubSpotServerErrors",
    "ThrottleReleaseJobsFailing",
    "ThrottleIntakeUnavailable",
}

pytestmark = pytest.mark.skipif(
    not HELM.exists(), reason="helm is missing: `bash scripts/check_chart.sh` installs it"
)


def render_with(values: Path, *sets: str) -> list[dict]:
    """`helm template` with a values file and `--set` values; the manifests as dicts."""
    args = [str(HELM), "template", "throttle", str(CHART), "-n", "throttle", "-f", str(values)]
    for value in sets:
        args += ["--set", value]
    result = subprocess.run(args, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def alerts(docs: list[dict]) -> dict[str, dict]:
    (rule,) = of_kind(docs, "PrometheusRule")
    return {r["alert"]: r for group in rule["spec"]["groups"] for r in group["rules"]}


def test_nothing_is_rendered_by_default() -> None:
    docs = render()
    assert not of_kind(docs, "ServiceMonitor") and not of_kind(docs, "PrometheusRule")
    assert not [
        d for d in of_kind(docs, "ConfigMap") if "grafana_dashboard" in d["metadata"]["labels"]
    ]


def test_the_service_monitor_scrapes_the_web_service_with_the_secret_token() -> None:
    docs = render(*ON, "metrics.serviceMonitor.labels.release=prom")
    (monitor,) = of_kind(docs, "ServiceMonitor")
    (service,) = [s for s in of_kind(docs, "Service") if s["metadata"]["name"] == "throttle-web"]
    (secret,) = [s for s in of_kind(docs, "Secret") if s["metadata"]["name"] == "throttle"]
    labels = service["metadata"]["labels"]
    assert monitor["metadata"]["labels"]["release"] == "prom"
    assert all(labels[k] == v for k, v in monitor["spec"]["selector"]["matchLabels"].items())
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["throttle"]}
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] in {port["name"] for port in service["spec"]["ports"]}
    assert endpoint["path"] == "/metrics"
    assert endpoint["authorization"] == {
        "type": "Bearer",
        "credentials": {"name": secret["metadata"]["name"], "key": "THROTTLE_METRICS_TOKEN"},
    }
    assert "THROTTLE_METRICS_TOKEN" in secret["data"]
    assert TOKEN not in json.dumps(monitor)


def test_the_service_monitor_reads_an_existing_secret_or_needs_a_token() -> None:
    docs = render(*ON[1:], "existingSecret=ops-secrets")
    (monitor,) = of_kind(docs, "ServiceMonitor")
    assert monitor["spec"]["endpoints"][0]["authorization"]["credentials"]["name"] == "ops-secrets"
    assert "needs the metrics token" in refused(*ON[1:])


def test_the_rules_have_the_alerts_and_thresholds_asked_for(tmp_path: Path) -> None:
    # --set gives strings for decimals: thresholds come from a values file, as operators give them
    values = tmp_path / "values.yaml"
    rule = {
        "hubspotRateLimitedRatio": 0.02,
        "hubspotServerErrorRatio": 0.2,
        "intakeUnavailableRatio": 0.03,
        "alertLabels": {"team": "integrations"},
    }
    values.write_text(yaml.safe_dump({"metrics": {"prometheusRule": rule}}))
    docs = render_with(values, *ON)
    found = alerts(docs)
    assert found.keys() >= REQUIRED_ALERTS
    assert found["ThrottleHubSpotRateLimited"]["expr"].rstrip().endswith("> 0.02")
    assert found["ThrottleHubSpotServerErrors"]["expr"].rstrip().endswith("> 0.2")
    assert found["ThrottleIntakeUnavailable"]["expr"].rstrip().endswith("> 0.03")
    assert {rule["labels"]["team"] for rule in found.values()} == {"integrations"}
    assert "0.03" not in json.dumps(alerts(render(*ON)))  # the defaults are different


def test_every_alert_uses_metrics_and_labels_the_service_serves(make_app, monkeypatch) -> None:
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    exposed = exposed_series(make_app(metrics_token=TOKEN), TOKEN)
    found = alerts(render(*ON, "fullnameOverride=prod"))
    wrong = {
        name: errors
        for name, rule in found.items()
        if (errors := violations(rule["expr"], exposed, target_job="prod-web"))
    }
    assert not wrong, wrong


def test_the_dashboard_config_map_holds_the_dashboard_file() -> None:
    docs = render(*ON, "metrics.grafanaDashboard.annotations.grafana_folder=Throttle")
    (config,) = [
        d for d in of_kind(docs, "ConfigMap") if "grafana_dashboard" in d["metadata"]["labels"]
    ]
    assert config["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert config["metadata"]["annotations"] == {"grafana_folder": "Throttle"}
    shipped = json.loads((CHART / "dashboards" / "throttle.json").read_text())
    assert json.loads(config["data"]["throttle.json"]) == shipped
