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
