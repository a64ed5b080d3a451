"""devtools.chart_policy (run by scripts/check_chart.sh) accepts a hardened pod and reports each
kind of violation it exists for."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from devtools import chart_policy

LABELS = {"app.kubernetes.io/name": "throttle", "app.kubernetes.io/component": "web"}
DEPLOYMENT: dict[str, Any] = {
    "kind": "Deployment",
    "metadata": {"name": "web"},
    "spec": {
        "selector": {"matchLabels": dict(LABELS)},
        "template": {
            "metadata": {"labels": dict(LABELS)},
            "spec": {
                "automountServiceAccountToken": False,
                "securityContext": {
                    "runAsNonRoot": True,
                    "runAsUser": 10001,
                    "seccompProfile": {"type": "RuntimeDefault"},
                },
                "containers": [
                    {
                        "name": "web",
                        "securityContext": {
                            "allowPrivilegeEscalation": False,
                            "readOnlyRootFilesystem": True,
                            "capabilities": {"drop": ["ALL"]},
                        },
                        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
                        "resources": {"limits": {"memory": "256Mi"}},
                    }
                ],
            },
        },
    },
}
SERVICE = {"kind": "Service", "metadata": {"name": "web"}, "spec": {"selector": dict(LABELS)}}


def test_a_hardened_pod_and_its_service_pass(tmp_path: Path) -> None:
    rendered = tmp_path / "rendered.yaml"
    rendered.write_text(yaml.safe_dump_all([DEPLOYMENT, None, SERVICE]))
    assert chart_policy.main([str(rendered)]) == 0


def test_each_violation_is_reported() -> None:
    broken = copy.deepcopy(DEPLOYMENT)
    pod = broken["spec"]["template"]["spec"]
    pod["securityContext"]["runAsUser"] = 0
    pod["containers"][0]["volumeMounts"] = []
    del pod["containers"][0]["resources"]
    pod["containers"][0]["securityContext"]["readOnlyRootFilesystem"] = False
    stray = {**SERVICE, "spec": {"selector": {"app.kubernetes.io/component": "webs"}}}
    errors = chart_policy.violations([broken, stray])
    assert errors == [
        "Deployment/web: pod securityContext is not hardened: " + str(pod["securityContext"]),
        "Deployment/web/web: container securityContext is not hardened",
        "Deployment/web/web: no writable /tmp mount",
        "Deployment/web/web: no resources",
        "Service/web: selects no rendered pod",
    ]


MONITOR: dict[str, Any] = {
    "kind": "ServiceMonitor",
    "metadata": {"name": "web"},
    "spec": {
        "selector": {"matchLabels": dict(LABELS)},
        "endpoints": [
            {
                "port": "http",
                "authorization": {
                    "type": "Bearer",
                    "credentials": {"name": "throttle", "key": "THROTTLE_METRICS_TOKEN"},
                },
            }
        ],
    },
}
LABELLED_SERVICE = {
    "kind": "Service",
    "metadata": {"name": "web", "labels": dict(LABELS)},
    "spec": {"selector": dict(LABELS), "ports": [{"name": "http", "port": 80}]},
}


def test_a_service_monitor_with_the_token_from_a_secret_passes() -> None:
    assert chart_policy.violations([DEPLOYMENT, LABELLED_SERVICE, MONITOR]) == []


def test_service_monitor_violations_are_reported() -> None:
    stray = copy.deepcopy(MONITOR)
    stray["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"] = "webs"
    wrong_port = copy.deepcopy(MONITOR)
    wrong_port["spec"]["endpoints"][0]["port"] = "metrics"
    inline = copy.deepcopy(MONITOR)
    inline["spec"]["endpoints"][0] = {"port": "http", "bearerToken": "s3cret"}
    anonymous = copy.deepcopy(MONITOR)
    del anonymous["spec"]["endpoints"][0]["authorization"]
    for doc, name in (
        (stray, "stray"),
        (wrong_port, "port"),
        (inline, "inline"),
        (anonymous, "anon"),
    ):
        doc["metadata"]["name"] = name
    errors = chart_policy.violations(
        [DEPLOYMENT, LABELLED_SERVICE, stray, wrong_port, inline, anonymous]
    )
    assert errors == [
        "ServiceMonitor/stray: selects no rendered Service",
        "ServiceMonitor/port: scrapes port metrics, not on its Service",
        "ServiceMonitor/inline: no bearer token read from a Secret key",
        "ServiceMonitor/anon: no bearer token read from a Secret key",
    ]
