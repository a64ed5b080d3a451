"""The Helm chart is closed by default: rendered with `helm template` (the binary
scripts/check_chart.sh installs into .cache/tools) and read back as manifests.

- web pods serve no /rq unless web.mountDashboard, and get no dashboard password otherwise;
- an Ingress routes only the public paths (/api/hubspot/, /api/oauth/) unless a host lists more;
- NetworkPolicies (on by default): every pod accepts nothing and reaches only DNS, PostgreSQL,
  Redis and HTTPS; web pods also accept the ingress controller; selectors and CIDRs are values;
- the values schema refuses development-only settings and short secrets.
`bash scripts/check_chart.sh` lints, renders and validates the chart (and its self-test breaks
it eleven ways); the last test here runs its self-test.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "throttle"
HELM = ROOT / ".cache" / "tools" / "bin" / "helm"
WORKER_COMPONENTS = {"worker-releases", "worker-maintenance", "scheduler"}

pytestmark = pytest.mark.skipif(
    not HELM.exists(), reason="helm is missing: `bash scripts/check_chart.sh` installs it"
)


def render(*sets: str) -> list[dict]:
    """`helm template` with `--set` values; the manifests as dicts."""
    args = [str(HELM), "template", "throttle", str(CHART), "--namespace", "throttle"]
    for value in sets:
        args += ["--set", value]
    result = subprocess.run(args, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def refused(*sets: str) -> str:
    """The error `helm template` gives for these values (it must fail)."""
    args = [str(HELM), "template", "throttle", str(CHART)]
    for value in sets:
        args += ["--set", value]
    result = subprocess.run(args, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode != 0, "helm accepted the values"
    return result.stderr


def of_kind(docs: list[dict], kind: str) -> list[dict]:
    return [doc for doc in docs if doc["kind"] == kind]


def container(docs: list[dict], deployment: str) -> dict:
    (found,) = [d for d in of_kind(docs, "Deployment") if d["metadata"]["name"] == deployment]
    return found["spec"]["template"]["spec"]["containers"][0]


def pods(docs: list[dict]) -> dict[str, dict[str, str]]:
    """component -> pod labels, for every Deployment and Job."""
    found = {}
    for doc in of_kind(docs, "Deployment") + of_kind(docs, "Job"):
        labels = doc["spec"]["template"]["metadata"]["labels"]
        found[labels["app.kubernetes.io/component"]] = labels
    return found


def selecting(policies: list[dict], labels: dict[str, str]) -> list[dict]:
    return [
        p["spec"]
        for p in policies
        if all(labels.get(k) == v for k, v in p["spec"]["podSelector"]["matchLabels"].items())
    ]


# ---- rq-dashboard ------------------------------------------------------------------------


def test_web_pods_serve_no_dashboard_by_default() -> None:
    env = container(render(), "throttle-web").get("env", [])
    assert {"name": "THROTTLE_DASHBOARD_PASSWORD", "value": ""} in env
    assert "THROTTLE_WEB_DASHBOARD" not in {e["name"] for e in env}


def test_mounting_the_dashboard_on_web_pods_is_explicit() -> None:
    docs = render("web.mountDashboard=true", "secrets.dashboardPassword=" + "p" * 32)
    env = container(docs, "throttle-web")["env"]
    assert env == [{"name": "THROTTLE_WEB_DASHBOARD", "value": "true"}]
    assert "dashboardPassword" in refused("web.mountDashboard=true")


def test_the_operator_page_on_web_pods_is_explicit() -> None:
    docs = render("web.opsPage=true", "secrets.dashboardPassword=" + "p" * 32)
    env = container(docs, "throttle-web").get("env") or []
    assert "THROTTLE_DASHBOARD_PASSWORD" not in {e["name"] for e in env}  # the Secret's value
    assert "THROTTLE_WEB_DASHBOARD" not in {e["name"] for e in env}  # /ops without /rq
    assert "dashboardPassword" in refused("web.opsPage=true")


# ---- Ingress -----------------------------------------------------------------------------


def test_the_default_ingress_routes_only_the_public_paths() -> None:
    docs = render("web.ingress.enabled=true", "web.ingress.hosts[0].host=t.example.com")
    (ingress,) = of_kind(docs, "Ingress")
    paths = ingress["spec"]["rules"][0]["http"]["paths"]
    assert [(p["path"], p["pathType"]) for p in paths] == [
        ("/api/hubspot/", "Prefix"),
        ("/api/oauth/", "Prefix"),
    ]


def test_a_host_may_list_its_own_paths() -> None:
    docs = render(
        "web.ingress.enabled=true",
        "web.ingress.hosts[0].host=t.example.com",
        "web.ingress.hosts[0].paths[0].path=/api/hubspot/action",
        "web.ingress.hosts[0].paths[0].pathType=Exact",
    )
    paths = of_kind(docs, "Ingress")[0]["spec"]["rules"][0]["http"]["paths"]
    assert [(p["path"], p["pathType"]) for p in paths] == [("/api/hubspot/action", "Exact")]


# ---- NetworkPolicies ---------------------------------------------------------------------


def test_every_pod_accepts_nothing_and_reaches_only_its_backends() -> None:
    docs = render(
        "dashboard.enabled=true",
        "secrets.dashboardPassword=" + "p" * 32,
        "secrets.redisUrl=redis://redis:6379/0",
    )
    policies = of_kind(docs, "NetworkPolicy")
    everyone = pods(docs)
    assert set(everyone) >= {"web", "dashboard", "migrate"} | WORKER_COMPONENTS
    for component, labels in everyone.items():
        mine = selecting(policies, labels)
        assert any({"Ingress", "Egress"} <= set(s["policyTypes"]) for s in mine), component
        egress = [rule for s in mine for rule in s.get("egress", [])]
        ports = sorted((p["port"], p["protocol"]) for rule in egress for p in rule["ports"])
        assert ports == [
            (53, "TCP"),
            (53, "UDP"),
            (443, "TCP"),
            (5432, "TCP"),
            (6379, "TCP"),
        ], component
        accepts = [rule for s in mine for rule in s.get("ingress", [])]
        if component == "web":
            assert len(accepts) == 1, accepts
        else:
            assert accepts == [], f"{component} accepts connections"


def test_web_pods_accept_only_the_ingress_controller_on_port_http() -> None:
    docs = render(
        "networkPolicy.ingressController.namespaceSelector.matchLabels.team=edge",
        "networkPolicy.ingressController.podSelector.matchLabels.app=proxy",
    )
    (web,) = selecting(
        [p for p in of_kind(docs, "NetworkPolicy") if p["spec"].get("ingress")],
        pods(docs)["web"],
    )
    (rule,) = web["ingress"]
    (peer,) = rule["from"]  # one peer with both selectors: pods of those namespaces only
    assert peer["namespaceSelector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": "ingress-nginx",
        "team": "edge",
    }
    assert peer["podSelector"]["matchLabels"] == {
        "app.kubernetes.io/name": "ingress-nginx",
        "app": "proxy",
    }
    assert rule["ports"] == [{"port": "http", "protocol": "TCP"}]


def test_egress_cidrs_and_ports_are_values() -> None:
    docs = render(
        "networkPolicy.egress.postgres.cidrs[0]=10.20.0.0/24",
        "networkPolicy.egress.redis.ports[0]=6380",
    )
    (default,) = [p for p in of_kind(docs, "NetworkPolicy") if p["spec"].get("egress")]
    rules = {rule["ports"][0]["port"]: rule for rule in default["spec"]["egress"]}
    assert rules[5432]["to"] == [{"ipBlock": {"cidr": "10.20.0.0/24"}}]
    assert "to" not in rules[443]  # no CIDRs: any address, on 443 only
    assert 6380 in rules and 6379 not in rules


def test_network_policies_can_be_turned_off() -> None:
    assert of_kind(render("networkPolicy.enabled=false"), "NetworkPolicy") == []


# ---- the values schema -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "named"),
    [
        ("config.extraEnv.THROTTLE_DEV_MODE=true", "propertyName 'THROTTLE_DEV_MODE'"),
        ("config.extraEnv.THROTTLE_BENCH_ENDPOINTS=true", "'THROTTLE_BENCH_ENDPOINTS'"),
        ("config.extraEnv.THROTTLE_WEB_DASHBOARD=true", "'THROTTLE_WEB_DASHBOARD'"),
        ("config.hubspotApiBase=http://api.hubapi.com", "hubspotApiBase"),
        ("secrets.secretKey=short", "secretKey"),
        ("secrets.hubspotClientSecret=placeholder", "hubspotClientSecret"),
    ],
)
def test_the_schema_refuses_what_start_up_would(value: str, named: str) -> None:
    assert named in refused(value)


@pytest.mark.slow
def test_check_chart_self_test_rejects_every_broken_chart() -> None:
    result = subprocess.run(
        ["bash", str(ROOT / "scripts" / "check_chart.sh"), "--self-test-only"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("rejected:") == 11, result.stderr
