"""`flask hubspot project` and `flask hubspot publish-action`, end to end through Click."""

from __future__ import annotations

import json

import pytest

from tests.conftest import TEST_CLIENT_SECRET
from throttle_app.hubspot.app_definition import api_definition

BASE = "https://throttle.example.com"
KEY = "test-developer-api-key"  # the fake's developer key
FILES = (
    "hsproject.json",
    "src/app/app-hsmeta.json",
    "src/app/workflow-actions/throttle-hsmeta.json",
)


def test_project_writes_the_three_files_for_this_deployment(make_app, tmp_path):
    app = make_app(public_base_url=BASE)
    out = tmp_path / "hubspot-project"
    result = app.test_cli_runner().invoke(args=["hubspot", "project", "--out", str(out)])
    assert result.exit_code == 0, result.output
    written = {name: json.loads((out / name).read_text()) for name in FILES}
    assert written["hsproject.json"]["platformVersion"] == "2026.03"
    auth = written["src/app/app-hsmeta.json"]["config"]["auth"]
    assert auth["redirectUrls"] == [BASE + "/api/oauth/callback"]
    action = written["src/app/workflow-actions/throttle-hsmeta.json"]["config"]
    assert action["actionUrl"] == BASE + "/api/hubspot/action"
    assert "hs project upload" in result.output
    # the project holds no secret: HubSpot issues the app's credentials on upload
    text = "".join((out / name).read_text() for name in FILES)
    settings = app.config["THROTTLE_SETTINGS"]
    for secret in (*settings.secrets, settings.hubspot_client_id, TEST_CLIENT_SECRET):
        assert secret not in text


def test_project_regenerates_in_place(make_app, tmp_path):
    app = make_app(public_base_url=BASE)
    runner = app.test_cli_runner()
    args = ["hubspot", "project", "--out", str(tmp_path), "--name", "Acme Throttle"]
    assert runner.invoke(args=args).exit_code == 0
    assert runner.invoke(args=args).exit_code == 0
    assert json.loads((tmp_path / "hsproject.json").read_text())["name"] == "Acme Throttle"


def test_project_refuses_without_a_public_base_url(make_app, tmp_path):
    app = make_app(public_base_url=None)
    result = app.test_cli_runner().invoke(args=["hubspot", "project", "--out", str(tmp_path)])
    assert result.exit_code != 0
    assert "PUBLIC_BASE_URL is not set" in result.output
    assert list(tmp_path.iterdir()) == []


def test_project_refuses_an_http_base_url_outside_development(make_app, tmp_path):
    app = make_app(public_base_url="http://throttle.example.com", dev_mode=False)
    result = app.test_cli_runner().invoke(args=["hubspot", "project", "--out", str(tmp_path)])
    assert result.exit_code != 0 and "must be https://" in result.output


@pytest.mark.parametrize("name", ["", " Throttle", "x" * 201])
def test_project_refuses_a_name_hubspot_would_refuse(make_app, tmp_path, name):
    app = make_app(public_base_url=BASE)
    args = ["hubspot", "project", "--out", str(tmp_path), "--name", name]
    result = app.test_cli_runner().invoke(args=args)
    assert result.exit_code != 0 and "--name" in result.output


def _publisher_app(build, fake, **overrides):
    settings = {
        "public_base_url": BASE,
        "hubspot_app_id": fake.faults()["app_id"],
        "hubspot_developer_api_key": KEY,
    }
    return build(**(settings | overrides))


def test_publish_action_creates_then_updates_the_same_definition(build, fake):
    runner = _publisher_app(build, fake).test_cli_runner()
    first = runner.invoke(args=["hubspot", "publish-action"])
    assert first.exit_code == 0, first.output
    assert first.output.startswith("created action definition")
    (created,) = fake.action_definitions()
    assert created["actionUrl"] == BASE + "/api/hubspot/action"
    assert created["inputFields"] == api_definition(BASE)["inputFields"]
    second = runner.invoke(args=["hubspot", "publish-action"])
    assert second.exit_code == 0, second.output
    assert second.output.startswith(f"updated action definition {created['id']} (revision 2)")
    (updated,) = fake.action_definitions()  # never a second definition
    assert updated["id"] == created["id"] and updated["revisionId"] == "2"


def test_publish_action_leaves_other_actions_of_the_app_alone(build, fake):
    other_app = _publisher_app(build, fake, public_base_url="https://other.example.com")
    assert other_app.test_cli_runner().invoke(args=["hubspot", "publish-action"]).exit_code == 0
    fake.set_faults(definitions_page_size=1)  # our definition is on a later page
    runner = _publisher_app(build, fake).test_cli_runner()
    assert runner.invoke(args=["hubspot", "publish-action"]).output.startswith("created")
    assert runner.invoke(args=["hubspot", "publish-action"]).output.startswith("updated")
    urls = sorted(d["actionUrl"] for d in fake.action_definitions())
    assert urls == ["https://other.example.com/api/hubspot/action", BASE + "/api/hubspot/action"]


def test_publish_action_names_what_it_lacks(build, fake):
    app = _publisher_app(build, fake, hubspot_app_id=None, hubspot_developer_api_key=None)
    result = app.test_cli_runner().invoke(args=["hubspot", "publish-action"])
    assert result.exit_code != 0
    assert "HUBSPOT_APP_ID and HUBSPOT_DEVELOPER_API_KEY" in result.output
    assert fake.action_definitions() == []


def test_a_refused_key_is_a_clear_error_that_does_not_show_the_key(build, fake):
    wrong = "wrong-developer-api-key-0123456789"
    app = _publisher_app(build, fake, hubspot_developer_api_key=wrong)
    result = app.test_cli_runner().invoke(args=["hubspot", "publish-action"])
    assert result.exit_code != 0
    assert "HTTP 403" in result.output and wrong not in result.output


def test_an_unreachable_hubspot_is_a_clear_error_that_does_not_show_the_key(build, fake):
    app = _publisher_app(build, fake, hubspot_api_base="http://127.0.0.1:9")
    result = app.test_cli_runner().invoke(args=["hubspot", "publish-action"])
    assert result.exit_code != 0
    assert "ConnectionError" in result.output and KEY not in result.output


def test_the_developer_key_is_redacted_from_logs_and_repr():
    from tests.conftest import service_env
    from throttle_app.config import Settings

    key = "developer-key-0123456789abcdef0123"
    settings = Settings.from_env(
        service_env(HUBSPOT_APP_ID="4242424", HUBSPOT_DEVELOPER_API_KEY=key)
    )
    assert settings.hubspot_app_id == 4242424
    assert key in settings.secrets and key not in repr(settings)
