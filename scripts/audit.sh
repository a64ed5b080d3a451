#!/usr/bin/env bash
# Security audits (`make audit`, and CI before the tests):
#   1. bandit on the shipped code, throttle_app/ and workers/, every test at every severity
#      (pyproject's [tool.bandit]). Any finding fails: fix it, or end its line with
#      `# nosec BXXX # why` (the test id and the reason; tests/test_audit.py refuses a bare one).
#   2. pip-audit on each lock (default: every requirements/*.txt), hashes required, no pip
#      resolution (the lock is the whole environment), against PyPI's vulnerability data, else
#      OSV's. A known vulnerability fails. When no service answers (a network that reaches only
#      the package index) it prints "pip-audit: vulnerability service unreachable, audit skipped"
#      with each service's reason, and passes. Any other failure of pip-audit fails.
# usage: scripts/audit.sh [LOCK...]
# environment: AUDIT_SERVICES (default "pypi osv": the services asked, in order), OSV_URL (an OSV
# API to ask instead of the public one, e.g. a mirror: pip-audit's --osv-url).
set -euo pipefail
cd "$(dirname "$0")/.."

BANDIT="${BANDIT:-.venv/bin/bandit}"
PIP_AUDIT="${PIP_AUDIT:-.venv/bin/pip-audit}"
read -r -a SERVICES <<<"${AUDIT_SERVICES:-pypi osv}"
osv_url=()
[[ -z "${OSV_URL:-}" ]] || osv_url=(--osv-url "${OSV_URL}")
# What pip-audit says when a service cannot be asked. PyPI's per-version JSON API answering 404
# for a package the lock took from PyPI means that API is blocked (--strict stops at the first).
UNREACHABLE="Dependency not found on PyPI and could not be audited|Could not connect to \S+ vulnerability feed"
UNREACHABLE+="|ConnectionError|ConnectTimeout|ReadTimeout|ProxyError|NameResolutionError"
UNREACHABLE+="|Max retries exceeded|[0-9]{3} Server Error"

echo "== bandit (throttle_app/, workers/)"
# bandit warns "nosec encountered ..., but no failed test" for every other node on a line that
# carries a nosec (the test did fail on that line's node): noise, filtered; the rest stays.
"${BANDIT}" -c pyproject.toml -q -r throttle_app workers 2> >(grep -v "nosec encountered" >&2)
echo "bandit: no findings"

# audit LOCK SERVICE: 0 audited clean, 1 vulnerable or failed (output shown), 2 unreachable
# (the reason in ${reason}).
audit() {
    local output status=0
    output="$("${PIP_AUDIT}" --requirement "$1" --require-hashes --disable-pip --strict \
        --progress-spinner off --vulnerability-service "$2" "${osv_url[@]}" 2>&1)" || status=$?
    if [[ ${status} -eq 0 ]]; then
        echo "pip-audit: $1: no known vulnerabilities (${2})"
        return 0
    fi
    if grep -qE "^Found [0-9]+ known vulnerabilit" <<<"${output}"; then
        echo "${output}" >&2
        echo "pip-audit: $1: known vulnerabilities (${2}, listed above)" >&2
        return 1
    fi
    reason="$(grep -E "${UNREACHABLE}" <<<"${output}" | tail -n 1 | cut -c 1-200)" || true
    [[ -z "${reason}" ]] || return 2
    echo "${output}" >&2
    echo "pip-audit: $1 failed against ${2} (pip-audit's output above)" >&2
    return 1
}

echo "== pip-audit"
locks=("$@")
[[ ${#locks[@]} -gt 0 ]] || locks=(requirements/*.txt)
for lock in "${locks[@]}"; do
    reasons=()
    for service in "${SERVICES[@]}"; do
        status=0
        audit "${lock}" "${service}" || status=$?
        case ${status} in
            0) continue 2 ;;
            2) reasons+=("${service}: ${reason}") ;;
            *) exit 1 ;;
        esac
    done
    # No service answered for this lock: none will for the next ones.
    echo "pip-audit: vulnerability service unreachable, audit skipped"
    printf '  %s\n' "${reasons[@]}"
    exit 0
done
