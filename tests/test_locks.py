"""The hash-locked requirements (requirements/*.txt, `make lock`) agree with pyproject.toml, pin
everything with the hash of every file PyPI has for each pinned version (amd64 and arm64 images
install from the same locks), and the SBOM (`make sbom`, the image's /app/sbom.cdx.json) lists
every locked runtime package. The slow ones ask PyPI (as bootstrap.sh and `make lock` do)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from packaging.specifiers import SpecifierSet
from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    canonicalize_name,
    parse_sdist_filename,
    parse_wheel_filename,
)
from packaging.version import Version

from tests.support.locks import LOCKS, ROOT, declared, lock_path, pyproject, read_lock

BIN = Path(sys.executable).parent
# Image platforms: Python 3.11 on Linux, amd64 and arm64.
IMAGE_ENVIRONMENTS = [
    {"python_version": "3.11", "python_full_version": "3.11.14", "sys_platform": "linux",
     "platform_system": "Linux", "platform_machine": machine, "implementation_name": "cpython",
     "platform_python_implementation": "CPython", "os_name": "posix"}
    for machine in ("x86_64", "aarch64")
]  # fmt: skip


def locked(name: str):
    return read_lock(lock_path(name))


def declared_by_lock() -> dict[str, dict]:
    """Which pyproject.toml requirements each lock must pin, at the declared version."""
    project = pyproject()
    runtime = declared(project["project"]["dependencies"])
    dev = declared(project["project"]["optional-dependencies"]["dev"])
    build = declared(project["dependency-groups"]["build"])
    return {"runtime": runtime, "dev": runtime | dev, "build": build}


@pytest.mark.parametrize("lock", LOCKS)
def test_every_pyproject_pin_is_locked_at_its_version(lock: str) -> None:
    pins = locked(lock)
    for name, requirement in declared_by_lock()[lock].items():
        specs = list(requirement.specifier)
        assert len(specs) == 1 and specs[0].operator == "==", f"pyproject: pin {requirement}"
        assert name in pins, f"{lock}.txt lacks {requirement}: run `make lock`"
        assert pins[name].version == specs[0].version, (
            f"pyproject.toml says {requirement}, {lock}.txt {pins[name].version}: run `make lock`"
        )


def test_the_dev_lock_runs_what_the_image_runs() -> None:
    """.venv and CI test the runtime packages at the image's versions and files, installed
    wherever the image installs them. (A dev-only package may widen a shared one's marker: trio,
    under selenium, adds cffi on Windows PyPy; on the image's platforms the markers agree.)"""
    dev = locked("dev")
    for name, pin in locked("runtime").items():
        assert name in dev, name
        assert dev[name].requirement.specifier == pin.requirement.specifier, name
        assert dev[name].hashes == pin.hashes, name
        for environment in IMAGE_ENVIRONMENTS:
            assert dev[name].applies(environment) == pin.applies(environment), (name, environment)


def test_the_locked_build_backend_builds_the_project_and_the_dev_install() -> None:
    backend = canonicalize_name("setuptools")
    build, dev = locked("build")[backend], locked("dev")[backend]
    assert build.version == dev.version
    (requires,) = pyproject()["build-system"]["requires"]
    assert requires.startswith("setuptools")
    assert Version(build.version) in SpecifierSet(requires.removeprefix("setuptools"))


@pytest.mark.parametrize("lock", ["runtime", "build"])
def test_every_image_package_installs_on_both_architectures(lock: str) -> None:
    """Nothing in the image's locks is left out on amd64 or arm64 by a platform marker that
    holds on the other (the universal resolution covers both alike)."""
    for name, pin in locked(lock).items():
        verdicts = {pin.applies(environment) for environment in IMAGE_ENVIRONMENTS}
        assert len(verdicts) == 1, f"{name}: {pin.requirement.marker}"


def index_files(name: str, version: str) -> set[str]:
    """The sha256 of every file PyPI serves for `name` at `version` (wheels and sdists, not
    yanked), from the simple API (JSON), the index pip installs from."""
    request = urllib.request.Request(
        f"https://pypi.org/simple/{name}/",
        headers={"Accept": "application/vnd.pypi.simple.v1+json"},
    )
    with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310 (https, fixed host)
        files = json.load(answer)["files"]
    wanted = Version(version)
    digests = set()
    for file in files:
        filename = file["filename"]
        try:
            if filename.endswith(".whl"):
                file_version = parse_wheel_filename(filename)[1]
            else:
                file_version = parse_sdist_filename(filename)[1]
        except (InvalidWheelFilename, InvalidSdistFilename):
            continue
        if file_version == wanted and not file.get("yanked"):
            digests.add(file["hashes"]["sha256"])
    return digests


@pytest.mark.slow
@pytest.mark.parametrize("lock", LOCKS)
def test_every_file_of_every_pinned_version_is_hashed(lock: str) -> None:
    """The lock holds the hash of every wheel and sdist PyPI has for each pinned version (so
    an arm64 build finds its wheels' hashes as an amd64 one does), and no other hash."""
    pins = locked(lock)
    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = pool.map(index_files, pins, [pin.version for pin in pins.values()])
        files = dict(zip(pins, answers, strict=True))
    for name, pin in pins.items():
        assert files[name], f"{name}=={pin.version}: PyPI lists no file"
        assert pin.hashes == files[name], (
            f"{name}=={pin.version}: lock has {len(pin.hashes)} hashes, PyPI {len(files[name])}"
        )


@pytest.mark.slow
def test_make_lock_leaves_the_locks_unchanged(tmp_path: Path) -> None:
    """scripts/lock.sh run on a copy of pyproject.toml and the locks reproduces them: the locks
    are what pyproject.toml resolves to, nothing hand-edited, nothing missing."""
    (tmp_path / "scripts").mkdir()
    shutil.copy2(ROOT / "scripts" / "lock.sh", tmp_path / "scripts")
    shutil.copy2(ROOT / "pyproject.toml", tmp_path)
    shutil.copytree(ROOT / "requirements", tmp_path / "requirements")
    result = subprocess.run(
        ["bash", tmp_path / "scripts" / "lock.sh"],
        env={**os.environ, "UV": str(BIN / "uv")},  # with the machine's TLS settings
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    for lock in LOCKS:
        path = lock_path(lock)
        assert (tmp_path / "requirements" / path.name).read_text() == path.read_text(), lock


def build_sbom(output: Path) -> dict:
    result = subprocess.run(
        ["bash", ROOT / "scripts" / "sbom.sh", output],
        env={**os.environ, "CYCLONEDX_PY": str(BIN / "cyclonedx-py")},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(output.read_text())


def test_the_sbom_lists_every_locked_runtime_package(tmp_path: Path) -> None:
    sbom = build_sbom(tmp_path / "sbom.cdx.json")
    assert sbom["bomFormat"] == "CycloneDX"
    assert sbom["specVersion"] == "1.6"
    # Reproducible: no serial number, no timestamp (the image's and `make sbom`'s are alike).
    assert "serialNumber" not in sbom and "timestamp" not in sbom["metadata"]
    root = sbom["metadata"]["component"]
    assert (root["name"], root["version"]) == ("throttle", pyproject()["project"]["version"])
    components = {canonicalize_name(c["name"]): c for c in sbom["components"]}
    pins = locked("runtime")
    assert set(components) == set(pins)
    for name, pin in pins.items():
        component = components[name]
        assert component["version"] == pin.version, name
        assert component["purl"] == f"pkg:pypi/{name}@{pin.version}", name
        hashes = {h["content"] for ref in component["externalReferences"] for h in ref["hashes"]}
        assert hashes == pin.hashes, name
