"""What schema validation cannot see in the Helm chart's rendered manifests:
`python -m devtools.chart_policy RENDERED.yaml` (scripts/check_chart.sh runs it per value set).

Selectors carry the component and match their pod labels; Services and PodDisruptionBudgets
select a rendered pod; every pod is hardened (non-root uid 10001, RuntimeDefault seccomp, no
service-account token, no privilege escalation, read-only root, ALL capabilities dropped), has a
writable /tmp and resources. Closed by default: an Ingress routes only the public paths; when
NetworkPolicies are rendered, every pod is under one that closes ingress and egress, egress rules
name their ports, only web pods accept connections, and only from named peers. A ServiceMonitor
selects a rendered Service, scrapes one of its ports, and reads its token from a Secret key.
Exit 1 with one `POLICY:` line on stderr per violation.

Needs only PyYAML: check_chart.sh runs it with kubernetes-validate's interpreter.
"""

from __future__ import annotations

import sys
from typing import Any

import yaml

Manifest = dict[str, Any]
PUBLIC_PATHS = ("/api/hubspot/", "/api/oauth/")


def pod_violations(doc: Manifest) -> list[str]:
    """The violations of one Deployment or Job: labels, selector, pod and container hardening."""
    errors = []
    kind, name = doc["kind"], doc["metadata"]["name"]
    where = f"{kind}/{name}"
    template = doc["spec"]["template"]
    labels = template["metadata"].get("labels", {})
    if "app.kubernetes.io/component" not in labels:
        errors.append(f"{where}: pod labels lack app.kubernetes.io/component")
    if kind == "Deployment":
        selector = doc["spec"]["selector"]["matchLabels"]
        if "app.kubernetes.io/component" not in selector:
            errors.append(f"{where}: selector lacks app.kubernetes.io/component")
        if any(labels.get(k) != v for k, v in selector.items()):
            errors.append(f"{where}: selector {selector} does not match pod labels")
    pod = template["spec"]
    psc = pod.get("securityContext", {})
    if pod.get("automountServiceAccountToken") is not False:
        errors.append(f"{where}: automountServiceAccountToken is not false")
    if not (
        psc.get("runAsNonRoot")
        and psc.get("runAsUser") == 10001
        and psc.get("seccompProfile", {}).get("type") == "RuntimeDefault"
    ):
        errors.append(f"{where}: pod securityContext is not hardened: {psc}")
    for c in pod["containers"]:
        csc = c.get("securityContext", {})
        if (
            csc.get("allowPrivilegeEscalation") is not False
            or csc.get("readOnlyRootFilesystem") is not True
            or "ALL" not in csc.get("capabilities", {}).get("drop", [])
        ):
            errors.append(f"{where}/{c['name']}: container securityContext is not hardened")
        if not any(m.get("mountPath") == "/tmp" for m in c.get("volumeMounts", [])):  # noqa: S108
            errors.append(f"{where}/{c['name']}: no writable /tmp mount")
        if not c.get("resources"):
            errors.append(f"{where}/{c['name']}: no resources")
    return errors


def violations(docs: list[Manifest]) -> list[str]:
    """Every violation in a rendered chart (its documents, empty ones removed)."""
    errors = []
    pods = [doc for doc in docs if doc["kind"] in ("Deployment", "Job")]
    pod_label_sets = [doc["spec"]["template"]["metadata"].get("labels", {}) for doc in pods]
    for doc in pods:
        errors += pod_violations(doc)
    for doc in docs:
        if doc["kind"] in ("Service", "PodDisruptionBudget"):
            selector = doc["spec"]["selector"]
            selector = selector.get("matchLabels", selector)
            if not any(all(ls.get(k) == v for k, v in selector.items()) for ls in pod_label_sets):
                errors.append(f"{doc['kind']}/{doc['metadata']['name']}: selects no rendered pod")
    return (
        errors
        + ingress_violations(docs)
        + network_violations(docs, pod_label_sets)
        + monitor_violations(docs)
    )


def ingress_violations(docs: list[Manifest]) -> list[str]:
    """Ingress rules that route anything but the public paths."""
    errors = []
    for doc in docs:
        if doc["kind"] != "Ingress":
            continue
        for rule in doc["spec"]["rules"]:
            for path in rule["http"]["paths"]:
                if not path["path"].startswith(PUBLIC_PATHS):
                    errors.append(
                        f"Ingress/{doc['metadata']['name']}: routes {path['path']}"
                        f" (only the public paths {', '.join(PUBLIC_PATHS)})"
                    )
    return errors


def monitor_violations(docs: list[Manifest]) -> list[str]:
    """ServiceMonitors that select no rendered Service, scrape a port it lacks, or do not read
    the bearer token /metrics requires from a Secret key (none, or one written inline)."""
    errors = []
    services = [doc for doc in docs if doc["kind"] == "Service"]
    for monitor in (doc for doc in docs if doc["kind"] == "ServiceMonitor"):
        where = f"ServiceMonitor/{monitor['metadata']['name']}"
        spec = monitor["spec"]
        chosen = [
            s for s in services if _selects(spec["selector"], s["metadata"].get("labels", {}))
        ]
        if not chosen:
            errors.append(f"{where}: selects no rendered Service")
        ports = {port.get("name") for s in chosen for port in s["spec"]["ports"]}
        for endpoint in spec["endpoints"]:
            if chosen and endpoint.get("port") not in ports:
                errors.append(f"{where}: scrapes port {endpoint.get('port')}, not on its Service")
            credentials = endpoint.get("authorization", {}).get("credentials", {})
            if "bearerToken" in endpoint or not {"name", "key"} <= credentials.keys():
                errors.append(f"{where}: no bearer token read from a Secret key")
    return errors


def _selects(selector: Manifest, labels: Manifest) -> bool:
    return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())


def network_violations(docs: list[Manifest], pod_label_sets: list[Manifest]) -> list[str]:
    """When NetworkPolicies are rendered: every pod closed both ways, egress by port, only web
    pods accept connections, and only from named peers."""
    errors = []
    policies = [doc for doc in docs if doc["kind"] == "NetworkPolicy"]
    for policy in policies:
        where = f"NetworkPolicy/{policy['metadata']['name']}"
        spec = policy["spec"]
        if not any(_selects(spec["podSelector"], labels) for labels in pod_label_sets):
            errors.append(f"{where}: selects no rendered pod")
        for rule in spec.get("egress") or []:
            if not rule.get("ports"):
                errors.append(f"{where}: an egress rule without ports")
        for rule in spec.get("ingress") or []:
            if not rule.get("from") or not all(rule["from"]):
                errors.append(f"{where}: accepts connections from anywhere")
    for labels in pod_label_sets if policies else []:
        component = labels.get("app.kubernetes.io/component")
        mine = [p["spec"] for p in policies if _selects(p["spec"]["podSelector"], labels)]
        if not any({"Ingress", "Egress"} <= set(spec.get("policyTypes", [])) for spec in mine):
            errors.append(f"pods {component}: no NetworkPolicy closes their ingress and egress")
        if component != "web" and any(spec.get("ingress") for spec in mine):
            errors.append(f"pods {component}: a NetworkPolicy lets them accept connections")
    return errors


def main(argv: list[str]) -> int:
    """Check the rendered manifests in the file argv[0]; 0 when they hold, else 1."""
    with open(argv[0]) as rendered:
        docs = [doc for doc in yaml.safe_load_all(rendered) if doc]
    errors = violations(docs)
    for error in errors:
        print(f"POLICY: {error}", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
