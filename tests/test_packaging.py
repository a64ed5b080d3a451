"""The wheel (what the image installs) holds the service only: throttle_app and workers, never
the dev tools (fake_hubspot, devtools, tests), and requires exactly the versions the runtime lock
holds. Built the way the Dockerfile's builder builds it (`pip wheel --no-deps
--no-build-isolation .`: the locked setuptools of requirements/dev.txt here, of build.txt there;
tests/test_locks.py checks they are one version) from a copy of the checkout; a few seconds."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from email.parser import HeaderParser
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.support.locks import lock_path, read_lock

ROOT = Path(__file__).resolve().parents[1]
# What never reaches a build context (.dockerignore) or is left over by local builds.
NOT_SOURCE = (".git", ".venv", ".cache", "__pycache__", "build", "dist", "*.egg-info", ".*_cache")


def test_the_wheel_holds_the_service_and_no_dev_tools(tmp_path: Path) -> None:
    source = tmp_path / "src"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(*NOT_SOURCE))
    wheels = tmp_path / "wheels"
    build = ["wheel", "--no-deps", "--no-build-isolation", "-q", "--wheel-dir", wheels, source]
    result = subprocess.run(
        [sys.executable, "-m", "pip", *build],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    (wheel,) = wheels.glob("throttle-*.whl")
    archive = zipfile.ZipFile(wheel)
    names = archive.namelist()
    top = {name.split("/", 1)[0] for name in names if ".dist-info/" not in name}
    assert top == {"throttle_app", "workers"}
    for module in ("throttle_app/app.py", "throttle_app/release/jobs.py", "workers/worker.py"):
        assert module in names
    assert "throttle_app/ops/templates/ops/index.html" in names  # the operator page's template

    (metadata,) = [name for name in names if name.endswith(".dist-info/METADATA")]
    headers = HeaderParser().parsestr(archive.read(metadata).decode())
    requires = [Requirement(text) for text in headers.get_all("Requires-Dist")]
    runtime = [r for r in requires if r.marker is None]  # the `dev` extra's are marked
    pins = read_lock(lock_path("runtime"))
    assert runtime
    for requirement in runtime:
        (spec,) = requirement.specifier
        assert spec.operator == "==", requirement
        assert pins[canonicalize_name(requirement.name)].version == spec.version, requirement
