#!/usr/bin/env bash
# Regenerate the hash-locked requirement files from pyproject.toml (`make lock`):
#   requirements/runtime.txt  [project] dependencies: what the image and the wheel run with
#   requirements/dev.txt      the same plus the `dev` extra: what .venv and CI install; resolved
#                             within runtime.txt's pins, so the tests run what the image runs
#   requirements/build.txt    the `build` dependency group: the image builder's tools (the build
#                             backend and the SBOM generator)
# One universal resolution each for Python 3.11 (any OS and architecture: amd64 and arm64 images
# install from the same files), with the sha256 of every file PyPI has for each pinned version.
# Pins already in a lock are kept unless pyproject.toml needs another; pass --upgrade to move
# every transitive pin to its newest allowed version. Extra arguments go to each `uv pip compile`.
set -euo pipefail
cd "$(dirname "$0")/.."

UV="${UV:-.venv/bin/uv}"
compile=("${UV}" pip compile --quiet --universal --python-version 3.11 --generate-hashes
    --custom-compile-command "make lock" "$@")

"${compile[@]}" pyproject.toml -o requirements/runtime.txt
"${compile[@]}" pyproject.toml --extra dev -c requirements/runtime.txt -o requirements/dev.txt
"${compile[@]}" --group build -o requirements/build.txt
echo "lock: requirements/runtime.txt, dev.txt and build.txt match pyproject.toml"
