"""The HubSpot app and the Throttle action's definition for one deployment, as plain dicts.

Two forms of the same definition (fields from action_fields.py):
- a developer-platform project (platform version 2026.03) to upload with HubSpot's CLI
  (`hs project upload`): `hsproject.json`, `src/app/app-hsmeta.json` and
  `src/app/workflow-actions/throttle-hsmeta.json` (`project_files`);
- the body of the v4 automation API (`/automation/v4/actions/{appId}`) for apps on the older
  platform (`api_definition`, published by action_publisher.py).

Formats as documented by HubSpot (the 2026.03 file reference is not stored here; these follow
the newest documented format, 2025.2, whose keys the 2026.03 templates keep):
https://developers.hubspot.com/docs/apps/developer-platform/build-apps/app-configuration
https://developers.hubspot.com/docs/apps/developer-platform/add-features/custom-workflow-actions
The project holds URLs, scopes and labels only, never a secret: HubSpot issues the app's client
id and secret when the project is uploaded.
"""

from __future__ import annotations

from typing import Any

from throttle_app.hubspot import action_fields
from throttle_app.hubspot.action_fields import Field

PLATFORM_VERSION = "2026.03"
# What the install asks for (oauth/views.py): `automation` completes callbacks, `oauth` is the
# base scope every OAuth app holds; GET /account-info/v3/details needs no further scope.
REQUIRED_SCOPES = ("automation", "oauth")
ACTION_PATH = "/api/hubspot/action"
CALLBACK_PATH = "/api/oauth/callback"
APP_UID = "throttle_app"
ACTION_UID = "throttle_workflow_action"
APP_DESCRIPTION = (
    "Throttle holds the records a HubSpot workflow enrolls and lets them continue at the rate"
    " you set, durably and exactly."
)
HSPROJECT = "hsproject.json"
APP_FILE = "src/app/app-hsmeta.json"
ACTION_FILE = "src/app/workflow-actions/throttle-hsmeta.json"


def action_url(public_base_url: str) -> str:
    """Where HubSpot POSTs execution requests."""
    return public_base_url.rstrip("/") + ACTION_PATH


def redirect_url(public_base_url: str) -> str:
    """Where HubSpot sends the admin back after consent."""
    return public_base_url.rstrip("/") + CALLBACK_PATH


def _type_definition(field: Field, api: bool) -> dict[str, Any]:
    definition: dict[str, Any] = {
        "name": field.name,
        "type": field.type,
        "fieldType": field.field_type,
    }
    if field.options:
        definition["options"] = [{"value": v, "label": label} for v, label in field.options]
    if api:  # the v4 schema requires `options` (empty when none) and `externalOptions`
        definition.setdefault("options", [])
        definition["externalOptions"] = False
    return definition


def _input_field(field: Field, api: bool) -> dict[str, Any]:
    return {
        "typeDefinition": _type_definition(field, api),
        "supportedValueTypes": list(field.value_types),
        "isRequired": field.required,
    }


def _labels() -> dict[str, Any]:
    """English labels (HubSpot requires at least `en`)."""
    return {
        "en": {
            "actionName": action_fields.ACTION_NAME,
            "actionDescription": action_fields.ACTION_DESCRIPTION,
            "actionCardContent": action_fields.ACTION_CARD,
            "inputFieldLabels": {f.name: f.label for f in action_fields.INPUT_FIELDS},
            "inputFieldDescriptions": {f.name: f.description for f in action_fields.INPUT_FIELDS},
            "outputFieldLabels": {f.name: f.label for f in action_fields.OUTPUT_FIELDS},
        }
    }


def _fields(api: bool) -> dict[str, Any]:
    return {
        "inputFields": [_input_field(f, api) for f in action_fields.INPUT_FIELDS],
        "outputFields": [
            {"typeDefinition": _type_definition(f, api)} for f in action_fields.OUTPUT_FIELDS
        ],
        "labels": _labels(),
        "objectTypes": list(action_fields.OBJECT_TYPES),
    }


def workflow_action(public_base_url: str, published: bool = True) -> dict[str, Any]:
    """`src/app/workflow-actions/throttle-hsmeta.json`."""
    return {
        "uid": ACTION_UID,
        "type": "workflow-action",
        "config": {
            "actionUrl": action_url(public_base_url),
            "isPublished": published,
            "supportedClients": [{"client": "WORKFLOWS"}],
            **_fields(api=False),
        },
    }


def app_meta(public_base_url: str, name: str) -> dict[str, Any]:
    """`src/app/app-hsmeta.json`: a marketplace-distributed OAuth app."""
    return {
        "uid": APP_UID,
        "type": "app",
        "config": {
            "name": name,
            "description": APP_DESCRIPTION,
            "distribution": "marketplace",
            "auth": {
                "type": "oauth",
                "redirectUrls": [redirect_url(public_base_url)],
                "requiredScopes": list(REQUIRED_SCOPES),
                "optionalScopes": [],
                "conditionallyRequiredScopes": [],
            },
            "permittedUrls": {"fetch": [], "iframe": [], "img": []},
        },
    }


def hsproject(name: str) -> dict[str, Any]:
    """`hsproject.json`."""
    return {"name": name, "srcDir": "src", "platformVersion": PLATFORM_VERSION}


def project_files(public_base_url: str, name: str = "Throttle") -> dict[str, dict[str, Any]]:
    """Every file of the project, by path relative to the project directory."""
    return {
        HSPROJECT: hsproject(name),
        APP_FILE: app_meta(public_base_url, name),
        ACTION_FILE: workflow_action(public_base_url),
    }


def api_definition(public_base_url: str, published: bool = True) -> dict[str, Any]:
    """The body of `POST /automation/v4/actions/{appId}` (required there: actionUrl,
    functions, inputFields, labels, objectTypes, published)."""
    return {
        "actionUrl": action_url(public_base_url),
        "published": published,
        "functions": [],
        **_fields(api=True),
    }
