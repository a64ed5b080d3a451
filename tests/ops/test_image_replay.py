"""The Dockerfile's own steps, run here (there is no Docker daemon): the builder's RUN steps and
the runtime stage's pip steps in temporary directories, then the environment they give is
checked against the runtime lock and the SBOM they ship against `make sbom`'s. Slow: it installs
the build tools and the runtime from the locks (PyPI, or pip's cache)."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.utils import canonicalize_name

from tests.support.dockerfile import assert_roles_import, dockerignore_rules, ignored, run_steps
from tests.support.locks import lock_path, read_lock
from tests.support.shipping import ROOT

# The image's absolute paths the RUN steps use, mapped into a temporary directory by the replay.
IMAGE_PATHS = ("/opt/build", "/wheels", "/app")
# Replayed in the runtime stage: the steps that only run pip or python (not the user creation).
PYTHON_ONLY = re.compile(r"^(pip|python) ")


def build_context(target: Path) -> None:
    """The checkout as `docker build .` sends it: filtered by .dockerignore."""
    rules = dockerignore_rules()
    for folder, dirs, files in os.walk(ROOT):
        here = Path(folder).relative_to(ROOT)
        # Prune ignored folders that no `!` rule reaches into (.git, .venv, caches, tests, ...).
        dirs[:] = [
            name
            for name in dirs
            if not ignored(str(here / name), rules)
            or any(rule.startswith(f"!{here / name}/") for rule in rules)
        ]
        for name in files:
            path = here / name
            if not ignored(str(path), rules):
                (target / path).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(ROOT / path, target / path)


def replay(step: str, root: Path, cwd: Path, env: dict[str, str]) -> None:
    """Run one RUN step with the image's paths mapped under `root`; refuses a step that would
    still touch any absolute path outside `root`."""
    for path in IMAGE_PATHS:
        step = re.sub(rf"(?<![\w.]){re.escape(path)}(?=[/\s]|$)", f"{root}{path}", step)
    for token in shlex.split(step):
        absolute = token.split("=", 1)[-1]
        assert not absolute.startswith("/") or absolute.startswith(str(root)), (token, step)
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", step],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, f"{step}\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"


def installed(python: Path) -> dict[str, str]:
    result = subprocess.run(
        [python, "-m", "pip", "list", "--format=json", "--disable-pip-version-check"],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PIP_CONFIG_FILE": os.devnull, "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr
    return {canonicalize_name(d["name"]): d["version"] for d in json.loads(result.stdout)}


@pytest.mark.slow
def test_the_image_steps_replayed_give_the_locked_runtime_and_its_sbom(tmp_path: Path) -> None:
    """No Docker daemon here, so the Dockerfile's own steps are run in temporary directories:
    every builder RUN step and the runtime stage's pip steps, with /opt/build, /wheels and /app
    mapped under tmp_path, the build context from .dockerignore, pip without this machine's
    configuration (its extra indexes and find-links) but with its cache (the Dockerfile's
    PIP_NO_CACHE_DIR is left out), and a fresh venv of this Python 3.11 standing in for the base
    image's. The runtime environment then holds exactly the locked runtime packages (those whose
    markers hold here), the project and pip; `pip check` passes; every role imports from the app
    tree with it; and the app tree's SBOM is the one `make sbom` builds."""
    context, image = tmp_path / "src", tmp_path / "image"
    build_context(context)
    subprocess.run([sys.executable, "-m", "venv", image], check=True, timeout=300)
    env = {key: value for key, value in os.environ.items() if not key.startswith("PIP_")}
    env.pop("VIRTUAL_ENV", None)
    env |= {"PATH": f"{image}/bin:/usr/bin:/bin", "PIP_CONFIG_FILE": os.devnull}
    if "PIP_CERT" in os.environ:  # this machine's TLS settings, as the rest of pip's runs here
        env["PIP_CERT"] = os.environ["PIP_CERT"]
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"

    for step in run_steps("builder"):
        replay(step, tmp_path, context, env)
    runtime_steps = [step for step in run_steps("runtime") if PYTHON_ONLY.match(step)]
    assert len(runtime_steps) == 2  # the install, compileall
    for step in runtime_steps:
        replay(step, tmp_path, tmp_path, env)

    pins = read_lock(lock_path("runtime"))
    expected = {name: pin.version for name, pin in pins.items() if pin.applies()}
    packages = installed(image / "bin" / "python")
    assert packages.pop("throttle") == "0.1.0"
    assert packages.pop("pip")
    assert packages == expected
    check = subprocess.run(
        [image / "bin" / "python", "-m", "pip", "check", "--disable-pip-version-check"],
        capture_output=True,
        timeout=120,
    )
    assert check.returncode == 0, check.stdout

    assert_roles_import(image / "bin" / "python", tmp_path / "app")

    shipped = json.loads((tmp_path / "app" / "sbom.cdx.json").read_text())
    local = tmp_path / "local-sbom.json"
    subprocess.run(
        ["bash", ROOT / "scripts" / "sbom.sh", local],
        env={**os.environ, "CYCLONEDX_PY": str(Path(sys.executable).parent / "cyclonedx-py")},
        check=True,
        capture_output=True,
        timeout=300,
    )
    made = json.loads(local.read_text())
    assert shipped["components"] == made["components"]
    assert shipped["metadata"]["component"] == made["metadata"]["component"]
