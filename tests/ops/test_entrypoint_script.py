"""scripts/entrypoint.sh as a file: its roles, strictness, `exec`, and its refusals (no process
beyond the script itself starts). tests/ops/test_entrypoint_roles.py runs the roles for real.

The entrypoint's roles are parsed out of its `case` statement, so adding a role there is enough
for compose and the chart to be allowed to use it.
"""

from __future__ import annotations

import os
import re
import subprocess

import pytest

from tests.support.shipping import ENTRYPOINT, entrypoint_roles

# Process entry points operators and the chart depend on (design brief: stable interfaces).
STABLE_ROLES = {"web", "worker", "scheduler", "migrate", "dashboard", "flask"}

EX_USAGE = 64


def run_entrypoint(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run the entrypoint with a minimal environment (nothing leaks in from the caller)."""
    return subprocess.run(
        ["bash", str(ENTRYPOINT), *args],
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **env},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_entrypoint_has_the_stable_roles() -> None:
    assert entrypoint_roles() >= STABLE_ROLES


def test_entrypoint_is_executable_and_strict() -> None:
    assert os.access(ENTRYPOINT, os.X_OK), "scripts/entrypoint.sh must be executable"
    assert "set -euo pipefail" in ENTRYPOINT.read_text()


def test_entrypoint_bash_syntax() -> None:
    result = subprocess.run(
        ["bash", "-n", str(ENTRYPOINT)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr


def test_entrypoint_execs_every_role() -> None:
    """Each role replaces the shell, so SIGTERM reaches the Python process."""
    text = ENTRYPOINT.read_text()
    for role in entrypoint_roles():
        body = re.search(rf"^  {role}\)\n(.*?)^    ;;", text, re.S | re.M)
        assert body, role
        assert re.search(r"^    exec ", body.group(1), re.M), f"role {role} does not exec"


@pytest.mark.parametrize("args", [("no-such-role",), ("bash",), ()])
def test_entrypoint_unknown_role_is_a_usage_error(args: tuple[str, ...]) -> None:
    result = run_entrypoint(*args)
    assert result.returncode == EX_USAGE
    assert "usage: entrypoint.sh ROLE" in result.stderr
    assert result.stdout == ""


def test_entrypoint_role_without_arguments_refuses_extra_ones() -> None:
    result = run_entrypoint("web", "--bind", "0.0.0.0:1")
    assert result.returncode == EX_USAGE
    assert "takes no arguments" in result.stderr


def test_dashboard_refuses_to_start_without_a_password() -> None:
    result = run_entrypoint("dashboard", REDIS_URL="redis://127.0.0.1:1/0")
    assert result.returncode != 0
    assert "refusing to start the dashboard" in result.stderr
    assert "THROTTLE_DASHBOARD_PASSWORD" in result.stderr


def test_dashboard_treats_an_empty_password_as_unset() -> None:
    result = run_entrypoint(
        "dashboard", REDIS_URL="redis://127.0.0.1:1/0", THROTTLE_DASHBOARD_PASSWORD=""
    )
    assert result.returncode != 0
    assert "THROTTLE_DASHBOARD_PASSWORD" in result.stderr


def test_dashboard_keeps_secrets_out_of_argv() -> None:
    """The dashboard role reads its password and Redis URL from the environment (never argv),
    and serves the guarded app, not rq-dashboard's own CLI."""
    text = ENTRYPOINT.read_text()
    start = text.index("exec gunicorn --config /dev/null")
    command = text[start : text.index("\n", text.index("standalone_app()", start))]
    assert "PASSWORD" not in command and "REDIS_URL" not in command
    assert "exec rq-dashboard" not in text
