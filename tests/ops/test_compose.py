"""docker-compose.yml agrees with the Docker entrypoint, the Dockerfile and the app's settings.
No services needed."""

from __future__ import annotations

import base64
import re

import yaml

from tests.support.shipping import ENTRYPOINT, REQUIRED_ENV, ROOT, entrypoint_roles

COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"

WEB_PORT = 8000
DASHBOARD_PORT = 9181


def load_compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def throttle_services(compose: dict) -> dict[str, dict]:
    """Services running this repository's runtime image (not the fake's `sandbox` image)."""
    return {
        name: svc
        for name, svc in compose["services"].items()
        if svc.get("build", {}).get("target") == "runtime"
        or str(svc.get("image", "")).startswith("throttle:")
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


def test_the_fake_runs_from_the_sandbox_stage_and_nothing_else_does() -> None:
    """fake_hubspot is not in the runtime image (tests/ops/test_dockerfile.py): compose builds
    it from the Dockerfile's `sandbox` stage, and every Throttle service from `runtime`."""
    services = load_compose()["services"]
    assert services["fake-hubspot"]["build"] == {"context": ".", "target": "sandbox"}
    assert not str(services["fake-hubspot"]["image"]).startswith("throttle:")
    built = {name: svc["build"] for name, svc in services.items() if "build" in svc}
    runtime = set(built) - {"fake-hubspot"}
    assert runtime == set(throttle_services(load_compose()))
    assert all(built[name]["target"] == "runtime" for name in runtime)
    stages = re.findall(r"^FROM \S+ AS (\w+)$", DOCKERFILE.read_text(), re.M)
    assert {"sandbox", "runtime"} <= set(stages)
