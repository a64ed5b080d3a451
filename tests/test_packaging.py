"""The wheel (what the image installs) holds the service only: throttle_app and workers, never
the dev tools (fake_hubspot, devtools, tests). Built the way the Dockerfile's builder does
(`pip wheel .`, pyproject's build backend in an isolated environment: the same package index as
scripts/bootstrap.sh's install, or pip's cache) from a copy of the checkout; a few seconds."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# What never reaches a build context (.dockerignore) or is left over by local builds.
NOT_SOURCE = (".git", ".venv", ".cache", "__pycache__", "build", "dist", "*.egg-info", ".*_cache")


def test_the_wheel_holds_the_service_and_no_dev_tools(tmp_path: Path) -> None:
    source = tmp_path / "src"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(*NOT_SOURCE))
    wheels = tmp_path / "wheels"
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "--wheel-dir", wheels, source],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    (wheel,) = wheels.glob("throttle-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top = {name.split("/", 1)[0] for name in names if ".dist-info/" not in name}
    assert top == {"throttle_app", "workers"}
    for module in ("throttle_app/app.py", "throttle_app/release/jobs.py", "workers/worker.py"):
        assert module in names
