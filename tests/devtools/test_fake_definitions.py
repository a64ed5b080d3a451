"""The fake's v4 action-definitions API refuses what HubSpot refuses."""

from __future__ import annotations

import copy

import pytest
import requests

from throttle_app.hubspot.app_definition import api_definition

KEY = {"hapikey": "test-developer-api-key"}
BODY = api_definition("https://throttle.example.com")


def _url(fake, suffix: str = "") -> str:
    return f"{fake.base_url}/automation/v4/actions/{fake.faults()['app_id']}{suffix}"


def test_our_definition_is_accepted_and_listed(fake):
    created = requests.post(_url(fake), params=KEY, json=BODY, timeout=5)
    assert created.status_code == 200, created.text
    listed = requests.get(_url(fake), params=KEY, timeout=5).json()
    assert [d["id"] for d in listed["results"]] == [created.json()["id"]]
    assert fake.stats()["calls"]["action_definitions"] == {"200": 2}


@pytest.mark.parametrize("key", ["actionUrl", "inputFields", "labels", "objectTypes", "functions"])
def test_a_create_without_a_required_field_is_a_400_naming_it(fake, key):
    body = {k: v for k, v in BODY.items() if k != key}
    answer = requests.post(_url(fake), params=KEY, json=body, timeout=5)
    assert answer.status_code == 400 and key in answer.json()["message"]
    assert fake.action_definitions() == []


def _broken(change) -> dict:
    body = copy.deepcopy(BODY)
    change(body)
    return body


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (lambda b: b["labels"]["en"].pop("actionName"), "actionName"),
        (lambda b: b["labels"].clear(), "labels"),
        (lambda b: b["inputFields"][2]["typeDefinition"].__setitem__("options", []), "options"),
        (lambda b: b["inputFields"][0]["typeDefinition"].__setitem__("type", "integer"), "type"),
        (lambda b: b["inputFields"][0].pop("isRequired"), "isRequired"),
        (lambda b: b["labels"]["en"]["inputFieldLabels"].__setitem__("nope", "x"), "nope"),
        (lambda b: b.__setitem__("actionUrl", "ftp://x"), "actionUrl"),
    ],
)
def test_a_malformed_definition_is_a_400_naming_the_problem(fake, change, named):
    answer = requests.post(_url(fake), params=KEY, json=_broken(change), timeout=5)
    assert answer.status_code == 400 and named in answer.json()["message"]


def test_an_update_bumps_the_revision_and_refuses_a_bad_field(fake):
    created = requests.post(_url(fake), params=KEY, json=BODY, timeout=5).json()
    url = _url(fake, "/" + created["id"])
    good = requests.patch(url, params=KEY, json={"published": False}, timeout=5)
    assert good.status_code == 200 and good.json()["revisionId"] == "2"
    bad = requests.patch(url, params=KEY, json={"inputFields": "all"}, timeout=5)
    assert bad.status_code == 400
    assert requests.patch(url, params=KEY, json={"functions": []}, timeout=5).status_code == 400
    missing = requests.patch(_url(fake, "/999"), params=KEY, json={}, timeout=5)
    assert missing.status_code == 404


def test_the_developer_key_and_the_app_are_checked(fake):
    assert requests.get(_url(fake), timeout=5).status_code == 401
    assert requests.get(_url(fake), params={"hapikey": "other"}, timeout=5).status_code == 403
    other_app = f"{fake.base_url}/automation/v4/actions/1"
    assert requests.get(other_app, params=KEY, timeout=5).status_code == 404


def test_completions_record_the_output_fields_as_sent(fake):
    tokens = fake.issue_tokens()
    fields = {"hs_execution_state": "SUCCESS", "throttle_outcome": "released"}
    fields["throttle_waited_seconds"] = "12"
    answer = requests.post(
        f"{fake.base_url}/automation/v4/actions/callbacks/complete",
        json={"inputs": [{"callbackId": "cb-1", "outputFields": fields}]},
        headers={"Authorization": f"Bearer {tokens['access_token']}"},
        timeout=5,
    )
    assert answer.status_code == 204
    assert fake.completions()[0]["output_fields"] == fields
    numeric = {**fields, "throttle_waited_seconds": 12}  # HubSpot takes strings only
    refused = requests.post(
        f"{fake.base_url}/automation/v4/actions/callbacks/complete",
        json={"inputs": [{"callbackId": "cb-2", "outputFields": numeric}]},
        headers={"Authorization": f"Bearer {tokens['access_token']}"},
        timeout=5,
    )
    assert refused.status_code == 400 and "throttle_waited_seconds" in refused.json()["message"]
