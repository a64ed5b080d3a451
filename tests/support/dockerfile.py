"""The Dockerfile and .dockerignore read as text: the stages, their RUN steps and pip commands, the
build context's rules; and the check that every role imports from an app tree."""

from __future__ import annotations

import fnmatch
import re
import shlex
import subprocess
from pathlib import Path

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
