#!/usr/bin/env bash
# Installs promtool (Debian's `prometheus` package, --no-install-recommends) when it is missing;
# scripts/check_chart.sh needs it for the chart's alert rules. Does nothing when promtool is on
# PATH: no apt-get update then. Needs root and apt-get (CI runs as root on Debian).
set -euo pipefail

if command -v promtool >/dev/null 2>&1; then
    exit 0
fi
if [[ "$(id -u)" -ne 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
    echo "promtool is missing: install Debian's prometheus package (or put promtool on PATH)" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
# The package's postinst would start a Prometheus server: forbid service starts while installing
# (unless the machine already has a policy).
policy=/usr/sbin/policy-rc.d
own_policy=0
if [[ ! -e "${policy}" ]]; then
    printf '#!/bin/sh\nexit 101\n' >"${policy}" && chmod 0755 "${policy}" && own_policy=1
fi
trap '[[ "${own_policy}" -eq 0 ]] || rm -f "${policy}"' EXIT
install() { apt-get install -y -qq --no-install-recommends prometheus >/dev/null; }
echo "installing promtool (Debian package prometheus)" >&2
# Try with the package lists already there; update them only when that fails.
if ! install 2>/dev/null; then
    apt-get update -qq >/dev/null
    install
fi
promtool --version | head -n 1 >&2
