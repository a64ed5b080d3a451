"""The generated HubSpot project and API definition, checked against HubSpot's documented format.

The required keys and types below are written down from HubSpot's docs (the 2026.03 file
reference is not in our sources; these are the newest documented, 2025.2, which the 2026.03
templates keep):
- app-hsmeta.json: https://developers.hubspot.com/docs/apps/developer-platform/build-apps/app-configuration
  (required: uid (<= 64 of [A-Za-z0-9_.-]), type "app", config.name (<= 200), config.description
  (<= 8192), config.distribution, config.auth.type, redirectUrls, requiredScopes)
- *-hsmeta.json of a workflow action:
  https://developers.hubspot.com/docs/apps/developer-platform/add-features/custom-workflow-actions
  (required: uid, type "workflow-action", config.actionUrl, config.supportedClients, labels.en;
  isPublished boolean; options with value and label for enumerations)
- hsproject.json: HubSpot/hubspot-project-components 2026.03/defaultFiles/hsproject.json
  ({"name", "srcDir": "src", "platformVersion": "2026.03"})
- the v4 API body: https://developers.hubspot.com/docs/api-reference/automation-actions-v4-v4/guide
  and HubSpot's official clients (hubspot-api-python automation/actions models): required
  actionUrl, functions, inputFields, labels (actionName per language), objectTypes, published;
  a typeDefinition needs name, type, options (may be empty) and externalOptions.
"""

from __future__ import annotations

import re

import pytest

from throttle_app.hubspot import action_fields, app_definition
from throttle_app.input_fields import FieldError
from throttle_app.release.rates import period_seconds

BASE = "https://throttle.example.com"
# HubSpot's value types and UI field types (custom workflow actions reference, v4 schema)
TYPES = {"bool", "date", "datetime", "enumeration", "json", "number", "object_coordinates"}
TYPES |= {"phone_number", "string", "currency_number"}
FIELD_TYPES = {"booleancheckbox", "checkbox", "date", "file", "html", "number", "phonenumber"}
FIELD_TYPES |= {"radio", "select", "text", "textarea", "calculation_equation"}
VALUE_TYPES = {"STATIC_VALUE", "OBJECT_PROPERTY", "FIELD_DATA", "FETCHED_OBJECT_PROPERTY"}
UID = re.compile(r"[A-Za-z0-9_.-]{1,64}")
# The action's inputs (design.md, issue 11): names and kinds that existing workflows store
INPUTS = {
    "maxThroughPut": "number",
    "time": "number",
    "period": "enumeration",
    "mode": "enumeration",
    "releaseDays": "enumeration",
    "windowStart": "string",
    "windowEnd": "string",
    "timeZone": "string",
    "startAt": "datetime",
    "priority": "number",
    "queueName": "string",
}


@pytest.fixture
def files():
    return app_definition.project_files(BASE, "Throttle")


def test_the_project_has_the_three_documented_files(files):
    assert set(files) == {
        "hsproject.json",
        "src/app/app-hsmeta.json",
        "src/app/workflow-actions/throttle-hsmeta.json",
    }
    assert files["hsproject.json"] == {
        "name": "Throttle",
        "srcDir": "src",
        "platformVersion": "2026.03",
    }


def test_the_app_is_a_marketplace_oauth_app_redirecting_to_our_callback(files):
    app = files["src/app/app-hsmeta.json"]
    assert UID.fullmatch(app["uid"]) and app["type"] == "app"
    config = app["config"]
    assert isinstance(config["name"], str) and 0 < len(config["name"]) <= 200
    assert isinstance(config["description"], str) and 0 < len(config["description"]) <= 8192
    assert config["distribution"] == "marketplace"
    auth = config["auth"]
    assert auth["type"] == "oauth"
    assert auth["redirectUrls"] == [BASE + "/api/oauth/callback"]
    assert "automation" in auth["requiredScopes"]
    assert all(isinstance(scope, str) for scope in auth["requiredScopes"])


def test_the_install_asks_for_the_scopes_the_app_declares(files):
    from throttle_app.oauth.views import SCOPES

    declared = files["src/app/app-hsmeta.json"]["config"]["auth"]["requiredScopes"]
    assert SCOPES.split() == declared


def test_the_action_follows_the_documented_workflow_action_format(files):
    action = files["src/app/workflow-actions/throttle-hsmeta.json"]
    assert UID.fullmatch(action["uid"]) and action["type"] == "workflow-action"
    assert action["uid"] != files["src/app/app-hsmeta.json"]["uid"]  # unique in the project
    config = action["config"]
    assert config["actionUrl"] == BASE + "/api/hubspot/action"
    assert isinstance(config["isPublished"], bool)
    assert config["supportedClients"] == [{"client": "WORKFLOWS"}]
    assert config["objectTypes"] and all(isinstance(o, str) for o in config["objectTypes"])
    for field in config["inputFields"]:
        _check_field(field["typeDefinition"])
        assert isinstance(field["isRequired"], bool)
        assert field["supportedValueTypes"] and set(field["supportedValueTypes"]) <= VALUE_TYPES
    for field in config["outputFields"]:
        _check_field(field["typeDefinition"])


def _check_field(definition: dict) -> None:
    assert isinstance(definition["name"], str) and definition["name"]
    assert definition["type"] in TYPES
    assert definition["fieldType"] in FIELD_TYPES
    if definition["type"] == "enumeration":
        assert definition["options"], definition["name"]
        for option in definition["options"]:
            assert isinstance(option["value"], str) and isinstance(option["label"], str)


def test_every_input_of_the_intake_is_declared_with_its_kind(files):
    config = files["src/app/workflow-actions/throttle-hsmeta.json"]["config"]
    declared = {f["typeDefinition"]["name"]: f["typeDefinition"] for f in config["inputFields"]}
    assert {name: d["type"] for name, d in declared.items()} == INPUTS
    required = {f["typeDefinition"]["name"] for f in config["inputFields"] if f["isRequired"]}
    assert required == {"maxThroughPut", "time", "period"}  # the policy fields are optional
    assert [o["value"] for o in declared["mode"]["options"]] == ["burst", "spread"]
    assert [o["value"] for o in declared["releaseDays"]["options"]] == list(action_fields.DAYS)
    assert declared["releaseDays"]["fieldType"] == "checkbox"  # several days, ";"-separated


def test_every_period_option_is_one_the_intake_accepts(files):
    config = files["src/app/workflow-actions/throttle-hsmeta.json"]["config"]
    (period,) = [f for f in config["inputFields"] if f["typeDefinition"]["name"] == "period"]
    values = [o["value"] for o in period["typeDefinition"]["options"]]
    assert [period_seconds("period", v) for v in values] == [1, 60, 3600, 86400]
    with pytest.raises(FieldError):
        period_seconds("period", "weeks")


def test_english_labels_name_and_describe_every_field(files):
    config = files["src/app/workflow-actions/throttle-hsmeta.json"]["config"]
    english = config["labels"]["en"]
    assert english["actionName"] and english["actionDescription"]
    inputs = [f["typeDefinition"]["name"] for f in config["inputFields"]]
    outputs = [f["typeDefinition"]["name"] for f in config["outputFields"]]
    assert set(english["inputFieldLabels"]) == set(inputs)
    assert set(english["inputFieldDescriptions"]) == set(inputs)
    assert set(english["outputFieldLabels"]) == set(outputs)
    for name in re.findall(r"\{\{(\w+)\}\}", english["actionCardContent"]):
        assert name in inputs


def test_the_outputs_are_the_outcome_and_the_wait(files):
    config = files["src/app/workflow-actions/throttle-hsmeta.json"]["config"]
    outputs = {f["typeDefinition"]["name"]: f["typeDefinition"] for f in config["outputFields"]}
    assert set(outputs) == {"throttle_outcome", "throttle_waited_seconds"}
    outcome = outputs["throttle_outcome"]
    assert outcome["type"] == "enumeration"
    assert [o["value"] for o in outcome["options"]] == ["released", "expired", "failed"]
    assert outputs["throttle_waited_seconds"]["type"] == "number"


def test_the_api_body_has_what_the_v4_schema_requires():
    body = app_definition.api_definition(BASE)
    for key in ("actionUrl", "functions", "inputFields", "labels", "objectTypes", "published"):
        assert key in body, key
    assert body["actionUrl"] == BASE + "/api/hubspot/action" and body["published"] is True
    assert body["functions"] == []
    for field in body["inputFields"] + body["outputFields"]:
        definition = field["typeDefinition"]
        _check_field(definition)
        assert isinstance(definition["options"], list)
        assert definition["externalOptions"] is False
    assert body["labels"]["en"]["actionName"] == "Throttle"


def test_a_base_url_with_a_trailing_slash_gives_the_same_urls():
    assert app_definition.action_url(BASE + "/") == BASE + "/api/hubspot/action"
    assert app_definition.redirect_url(BASE + "/") == BASE + "/api/oauth/callback"
