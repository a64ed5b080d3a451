#!/usr/bin/env bash
# Chromium and chromedriver from the OS packages (Debian), for the browser test of /ops
# (tests/ops/test_ops_browser.py, Selenium). Nothing is downloaded besides the OS packages;
# `apt-get update` runs only when something is missing. Idempotent and quiet.
set -euo pipefail

if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
    exit 0
fi
if [[ "$(id -u)" -ne 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
    echo "browser: Chromium or chromedriver is missing and cannot be installed here" \
        "(apt-get as root); the /ops browser test will be skipped" >&2
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null
echo "browser: installed Chromium and chromedriver from the OS packages" >&2
