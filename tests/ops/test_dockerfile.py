"""The Dockerfile builds the image every role runs from, and the dev tools stay out of it. No
services, no Docker needed: the stages and .dockerignore are read as text, and the runtime tree
the builder assembles is rebuilt here and every role's code imported from it (tests/
test_packaging.py builds the wheel the image installs)."""

from __future__ import annotations

import fnmatch
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import service_env
from tests.support.shipping import ROOT

DOCKERFILE = ROOT / "Dockerfile"
DEV_ONLY = ("fake_hubspot", "devtools", "tests")
# What each role imports: web (wsgi, gunicorn.conf.py's worker class), worker, scheduler, the
# probes, migrate (throttle_app's CLI and migrations), dashboard.
ROLE_MODULES = (
    "wsgi",
    "throttle_app.ops.web_worker",
    "workers.worker",
    "workers.scheduler",
    "workers.healthcheck",
    "throttle_app.ops.dashboard",
    "flask_migrate",
)


def stages() -> dict[str, str]:
    """Stage name -> its text (FROM line to the next FROM)."""
    parts = re.split(r"^(?=FROM )", DOCKERFILE.read_text(), flags=re.M)
    named = {}
    for part in parts[1:]:
        match = re.match(r"FROM \S+ AS (\w+)", part)
        assert match, part.splitlines()[0]
        named[match.group(1)] = part
    return named


def runtime_tree_commands() -> list[list[str]]:
    """The builder's `RUN mkdir -p /app ... && cp ...` step, as argv lists."""
    builder = stages()["builder"]
    run = re.search(r"^RUN mkdir -p /app.*?(?<!\\)\n(?!\s)", builder, re.S | re.M)
    assert run, "the builder has no RUN step assembling /app"
    text = run.group(0)[len("RUN ") :].replace("\\\n", " ")
    return [shlex.split(command) for command in text.split("&&")]


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


def ignored(path: str, rules: list[str]) -> bool:
    """Whether .dockerignore's `rules` leave `path` out of the build context (last match wins)."""
    verdict = False
    for rule in rules:
        negated = rule.startswith("!")
        pattern = rule.lstrip("!").rstrip("/")
        parts = path.split("/")
        prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
        if any(fnmatch.fnmatch(prefix, pattern) for prefix in prefixes):
            verdict = not negated
    return verdict


def test_dockerignore_keeps_the_dev_tools_out_and_what_the_stages_copy_in() -> None:
    rules = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for path in ("devtools/smoke.py", "tests/conftest.py", "scripts/run.sh", "Procfile"):
        assert ignored(path, rules), path
    needed = ["pyproject.toml", "wsgi.py", "gunicorn.conf.py", "scripts/entrypoint.sh"]
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
    program = "; ".join(
        [
            "import sys, runpy",
            *(f"sys.modules[{name!r}] = None" for name in DEV_ONLY),
            *(f"import {module}" for module in ROLE_MODULES),
            "runpy.run_path('gunicorn.conf.py')",
            f"assert throttle_app.__file__.startswith({str(tree)!r}), throttle_app.__file__",
            f"assert workers.__file__.startswith({str(tree)!r}), workers.__file__",
        ]
    )
    result = subprocess.run(
        [sys.executable, "-c", program],
        cwd=tree,
        env={**service_env(), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr[-3000:]


@pytest.mark.parametrize("name", DEV_ONLY)
def test_no_runtime_module_imports_a_dev_tool(name: str) -> None:
    pattern = re.compile(rf"^\s*(from|import) {name}\b", re.M)
    runtime = [ROOT / "wsgi.py", ROOT / "gunicorn.conf.py"]
    runtime += [*(ROOT / "throttle_app").rglob("*.py"), *(ROOT / "workers").rglob("*.py")]
    offenders = [str(p.relative_to(ROOT)) for p in runtime if pattern.search(p.read_text())]
    assert not offenders
