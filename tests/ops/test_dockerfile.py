"""The Dockerfile builds the image every role runs from, from the hash-locked requirements only,
with its SBOM, and the dev tools stay out of it. No Docker needed (there is no daemon here): the
stages and .dockerignore are read as text, the runtime tree the builder assembles is rebuilt here
and every role's code imported from it, and (slow) the builder's and runtime stage's RUN steps are
replayed in temporary environments (tests/test_packaging.py builds the wheel the image installs)."""

from __future__ import annotations

import fnmatch
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

from tests.conftest import service_env
from tests.support.locks import lock_path, read_lock
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


def run_steps(stage: str) -> list[str]:
    """The stage's RUN instructions, each as one shell command (continuations joined, BuildKit
    --mount flags dropped)."""
    steps, current = [], None
    for line in stages()[stage].splitlines():
        if current is None and line.startswith("RUN "):
            current = ""
            line = line[len("RUN ") :]
        if current is not None:
            current += " " + line.rstrip("\\").strip()
            if not line.endswith("\\"):
                steps.append(re.sub(r"--mount=\S+\s*", "", current).strip())
                current = None
    return steps


PIP = re.compile(r"(^|/)pip$")


def pip_commands(stage: str) -> list[list[str]]:
    """Every pip command of the stage's RUN steps, as argv lists."""
    commands = [shlex.split(part) for step in run_steps(stage) for part in step.split("&&")]
    return [argv for argv in commands if PIP.search(argv[0])]


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


def dockerignore_rules() -> list[str]:
    return [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]


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


def assert_roles_import(python: Path, tree: Path) -> None:
    """Every role's modules import with `python` from the app `tree`, the dev tools blocked."""
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
        [python, "-c", program],
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
