#!/usr/bin/env bash
# The CycloneDX SBOM (JSON, spec 1.6) of the runtime lock: every package of
# requirements/runtime.txt with its version, purl and the sha256 of each of its files, under
# pyproject.toml's project as the root component. Reproducible (no timestamp, no serial number):
# the same lock and cyclonedx-bom give the same bytes. `make sbom` writes build/sbom.cdx.json;
# the Dockerfile's builder runs this same script into the image's /app/sbom.cdx.json.
# usage: scripts/sbom.sh [OUTPUT]   (a relative OUTPUT is taken from the repository root)
set -euo pipefail
cd "$(dirname "$0")/.."

CYCLONEDX_PY="${CYCLONEDX_PY:-.venv/bin/cyclonedx-py}"
out="${1:-build/sbom.cdx.json}"

mkdir -p "$(dirname "${out}")"
"${CYCLONEDX_PY}" requirements requirements/runtime.txt --pyproject pyproject.toml \
    --output-reproducible --output-format JSON --output-file "${out}"
echo "sbom: ${out} (CycloneDX, from requirements/runtime.txt)"
