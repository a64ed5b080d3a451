"""The Dockerfile builds the image every role runs from, from the hash-locked requirements only,
with its SBOM, and the dev tools stay out of it. No services, no Docker needed: the stages and
.dockerignore are read as text, and the runtime tree the builder assembles is rebuilt here and
every role's code imported from it (tests/ops/test_image_replay.py runs the stages' steps,
tests/test_packaging.py builds the wheel the image installs)."""

from __future__ import annotations

import re
import shlex
import shutil
import sys
from pathlib import Path

import pytest

from tests.support.dockerfile import (
    DEV_ONLY,
    DOCKERFILE,
    assert_roles_import,
    dockerignore_rules,
    ignored,
    pip_commands,
    run_steps,
    runtime_tree_commands,
    stages,
)
from tests.support.shipping import ROOT


def test_dockerfile_entrypoint_and_user() -> None:
    text = DOCKERFILE.read_text()
    assert 'ENTRYPOINT ["scripts/entrypoint.sh"]' in text
    assert 'CMD ["web"]' in text
    assert re.search(r"^USER 10001:10001$", text, re.M)
    assert "FROM python:3.11-slim-bookworm AS runtime" in text


def test_runtime_is_the_default_target_and_takes_only_the_wheels_and_app_tree() -> None:
    named = stages()
    assert list(named)[-1] == "runtime", "`docker build .` must build the runtime stage"
    runtime = named["runtime"]
    copies = re.findall(r"^COPY (.*)$", runtime, re.M)
    assert copies == ["--from=builder /app/ /app/"]
    mounts = re.findall(r"--mount=type=bind,from=(\w+),source=(\S+),", runtime)
    assert mounts == [("builder", "/wheels")]
    for name in DEV_ONLY:
        assert name not in runtime


def test_the_builder_fetches_only_what_the_locks_hash() -> None:
    """Every pip command of the builder installs or downloads from a lock with --require-hashes,
    or builds the project itself without dependencies; builds use the locked backend (no build
    isolation, which would fetch an unpinned setuptools); nothing points pip at another index."""
    commands = pip_commands("builder")
    locks = set()
    for argv in commands:
        assert argv[1] in ("install", "wheel"), argv
        assert not {"--index-url", "--extra-index-url", "--find-links", "-i", "-f"} & set(argv)
        if "-r" in argv:
            assert "--require-hashes" in argv, argv
            locks.add(argv[argv.index("-r") + 1])
        else:
            assert argv[1] == "wheel" and argv[-1] == "." and "--no-deps" in argv, argv
        if argv[1] == "wheel":
            assert "--no-build-isolation" in argv, argv
    assert locks == {"requirements/build.txt", "requirements/runtime.txt"}
    runtime_pips = pip_commands("runtime")
    assert [argv[:3] for argv in runtime_pips] == [
        ["pip", "install", "--no-index"],
        ["pip", "uninstall", "--yes"],
    ]


def test_the_builder_ships_the_sbom_of_the_runtime_lock() -> None:
    """`make sbom`'s script, run with the locked build tools, into the app tree the runtime
    stage copies."""
    steps = [step for step in run_steps("builder") if "sbom" in step]
    assert len(steps) == 1
    argv = shlex.split(steps[0].split("&&")[0])
    assert argv == [
        "CYCLONEDX_PY=/opt/build/bin/cyclonedx-py",
        "bash",
        "scripts/sbom.sh",
        "/app/sbom.cdx.json",
    ]
    assert "bash scripts/sbom.sh" in (ROOT / "Makefile").read_text()


def test_the_app_tree_is_the_service_and_its_entrypoint_only() -> None:
    copied = []
    for argv in runtime_tree_commands():
        if argv[0] == "cp":
            copied += [arg for arg in argv[1:-1] if not arg.startswith("-")]
    service = ["wsgi.py", "gunicorn.conf.py", "throttle_app", "migrations", "workers"]
    assert sorted(copied) == sorted([*service, "scripts/entrypoint.sh"])
    assert all((ROOT / path).exists() for path in copied)


def test_the_sandbox_stage_is_the_fake_alone() -> None:
    sandbox = stages()["sandbox"]
    assert re.findall(r"^COPY (.*)$", sandbox, re.M) == ["fake_hubspot/ fake_hubspot/"]
    assert 'ENTRYPOINT ["python", "-m", "fake_hubspot"]' in sandbox
    assert re.search(r"^USER 10001:10001$", sandbox, re.M)


def test_dockerignore_keeps_the_dev_tools_out_and_what_the_stages_copy_in() -> None:
    rules = dockerignore_rules()
    for path in ("devtools/smoke.py", "tests/conftest.py", "scripts/run.sh", "Procfile"):
        assert ignored(path, rules), path
    needed = ["pyproject.toml", "wsgi.py", "gunicorn.conf.py", "scripts/entrypoint.sh"]
    needed += ["requirements/runtime.txt", "requirements/build.txt", "scripts/sbom.sh"]
    needed += ["throttle_app/app.py", "workers/worker.py", "migrations/env.py"]
    needed += ["fake_hubspot/server.py"]  # the sandbox stage's
    for path in needed:
        assert not ignored(path, rules), path


def test_every_role_imports_from_the_runtime_tree_without_the_dev_tools(tmp_path: Path) -> None:
    """The builder's cp steps replayed into a directory: every role's modules import from it
    with fake_hubspot and devtools made unimportable."""
    tree = tmp_path / "app"
    for argv in runtime_tree_commands():
        if argv[0] == "mkdir":
            for path in argv[2:]:
                (tmp_path / path.lstrip("/")).mkdir(parents=True, exist_ok=True)
        elif argv[0] == "cp":
            target = tmp_path / argv[-1].lstrip("/")
            for source in (ROOT / arg for arg in argv[1:-1] if not arg.startswith("-")):
                copy = shutil.copytree if source.is_dir() else shutil.copy2
                copy(source, target / source.name if target.is_dir() else target)
    assert sorted(p.name for p in tree.iterdir()) == sorted(
        ["wsgi.py", "gunicorn.conf.py", "throttle_app", "migrations", "workers", "scripts"]
    )
    assert_roles_import(Path(sys.executable), tree)


@pytest.mark.parametrize("name", DEV_ONLY)
def test_no_runtime_module_imports_a_dev_tool(name: str) -> None:
    pattern = re.compile(rf"^\s*(from|import) {name}\b", re.M)
    runtime = [ROOT / "wsgi.py", ROOT / "gunicorn.conf.py"]
    runtime += [*(ROOT / "throttle_app").rglob("*.py"), *(ROOT / "workers").rglob("*.py")]
    offenders = [str(p.relative_to(ROOT)) for p in runtime if pattern.search(p.read_text())]
    assert not offenders
