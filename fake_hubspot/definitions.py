"""The v4 custom-action definitions API: list, create, read, update and archive.

`/automation/v4/actions/{appId}[/{definitionId}]`, authenticated like HubSpot's with the
developer account's API key as the `hapikey` query parameter (401 without it, 403 with another
key), for the fake's own app only (404 for another appId). Bodies are validated as HubSpot's
schema requires (https://developers.hubspot.com/docs/api-reference/automation-actions-v4-v4/guide,
and the official clients' models): a create needs actionUrl, functions, inputFields, labels (with
an actionName per language), objectTypes and published; every field needs a typeDefinition with
a name, a known type, options for an enumeration; a 400 names the first problem. A PATCH takes
any subset (not functions) and bumps the revision. Lists are paged with `limit` and `after`.
"""

from __future__ import annotations

import copy
import re
from typing import Any

from fake_hubspot.messages import Reply, Request, api_error, json_reply
from fake_hubspot.state import Hub

PATH = re.compile(r"/automation/v4/actions/([0-9]{1,18})(?:/([^/]{1,64}))?")
TYPES = {"string", "number", "bool", "datetime", "enumeration", "date", "phone_number"}
TYPES |= {"currency_number", "json", "object_coordinates"}
FIELD_TYPES = {"booleancheckbox", "checkbox", "date", "file", "number", "phonenumber", "radio"}
FIELD_TYPES |= {"select", "text", "textarea", "calculation_equation", "html"}
VALUE_TYPES = {"STATIC_VALUE", "OBJECT_PROPERTY", "FIELD_DATA", "FETCHED_OBJECT_PROPERTY"}
REQUIRED = ("actionUrl", "functions", "inputFields", "labels", "objectTypes", "published")
PATCHABLE = {"actionUrl", "inputFields", "outputFields", "labels", "objectTypes", "published"}
PATCHABLE |= {"inputFieldDependencies", "executionRules", "objectRequestOptions"}


class Invalid(Exception):
    """A body HubSpot would refuse with 400 VALIDATION_ERROR."""


def handle(hub: Hub, req: Request) -> Reply | None:
    """Answer a definitions call; None when the path is not one."""
    match = PATH.fullmatch(req.path)
    if match is None:
        return None
    with hub.lock:
        problem = _authenticate(hub, req, int(match.group(1)))
        if problem is not None:
            return problem
        definitions = hub.definitions
        definition_id = match.group(2)
        try:
            if definition_id is None:
                if req.method == "GET":
                    return _list(hub, req)
                if req.method == "POST":
                    return _create(hub, req)
            elif definition_id not in definitions:
                return api_error(404, f"No definition {definition_id}", "OBJECT_NOT_FOUND")
            elif req.method == "GET":
                return json_reply(200, definitions[definition_id])
            elif req.method == "PATCH":
                return _update(hub, req, definition_id)
            elif req.method == "DELETE":
                del definitions[definition_id]
                return Reply(204)
        except Invalid as exc:
            return api_error(400, str(exc), "VALIDATION_ERROR")
        return api_error(405, f"{req.method} is not allowed here", "VALIDATION_ERROR")


def _authenticate(hub: Hub, req: Request, app_id: int) -> Reply | None:
    key = req.param("hapikey")
    if not key:
        return api_error(401, "This API requires a developer API key (hapikey)", "UNAUTHORIZED")
    if key != hub.settings.developer_api_key:
        return api_error(403, "The developer API key is not valid for this app", "FORBIDDEN")
    if app_id != hub.settings.app_id:
        return api_error(404, f"No app {app_id} in this developer account", "OBJECT_NOT_FOUND")
    return None


def _list(hub: Hub, req: Request) -> Reply:
    try:
        limit = min(int(req.param("limit") or 20), hub.settings.definitions_page_size)
        after = int(req.param("after") or 0)
    except ValueError:
        raise Invalid("limit and after must be integers") from None
    items = list(hub.definitions.values())[after : after + max(limit, 1)]
    page: dict[str, Any] = {"results": copy.deepcopy(items)}
    if after + len(items) < len(hub.definitions):
        page["paging"] = {"next": {"after": str(after + len(items))}}
    return json_reply(200, page)


def _create(hub: Hub, req: Request) -> Reply:
    body = _body(req)
    missing = [key for key in REQUIRED if key not in body]
    if missing:
        raise Invalid(f"Missing required field(s): {', '.join(missing)}")
    _validate(body)
    if not isinstance(body["functions"], list):
        raise Invalid("functions must be an array")
    hub.last_definition_id += 1
    definition_id = str(hub.last_definition_id)
    definition = {"id": definition_id, "revisionId": "1", **body}
    hub.definitions[definition_id] = definition
    return json_reply(200, definition)


def _update(hub: Hub, req: Request, definition_id: str) -> Reply:
    body = _body(req)
    unknown = sorted(set(body) - PATCHABLE)
    if unknown:
        raise Invalid(f"Unknown field(s) for an update: {', '.join(unknown)}")
    merged = {**hub.definitions[definition_id], **body}
    _validate(merged)
    merged["revisionId"] = str(int(merged["revisionId"]) + 1)
    hub.definitions[definition_id] = merged
    return json_reply(200, merged)


def _body(req: Request) -> dict[str, Any]:
    if req.content_type() != "application/json":
        raise Invalid("send application/json")
    try:
        body = req.json()
    except (ValueError, UnicodeDecodeError):
        raise Invalid("Invalid input JSON") from None
    if not isinstance(body, dict):
        raise Invalid("The request body must be a JSON object")
    return body


def _validate(definition: dict[str, Any]) -> None:
    url = definition.get("actionUrl")
    if not isinstance(url, str) or not url.startswith(("https://", "http://")):
        raise Invalid("actionUrl must be an http(s) URL")
    if not isinstance(definition.get("published"), bool):
        raise Invalid("published must be true or false")
    objects = definition.get("objectTypes")
    if not isinstance(objects, list) or not objects or not all(isinstance(o, str) for o in objects):
        raise Invalid("objectTypes must be a non-empty array of object types")
    inputs = _fields(definition.get("inputFields"), "inputFields", is_input=True)
    outputs = _fields(definition.get("outputFields", []), "outputFields", is_input=False)
    _labels(definition.get("labels"), inputs, outputs)


def _fields(fields: Any, where: str, is_input: bool) -> set[str]:
    if not isinstance(fields, list):
        raise Invalid(f"{where} must be an array")
    names = set()
    for index, item in enumerate(fields):
        at = f"{where}[{index}]"
        if not isinstance(item, dict) or not isinstance(item.get("typeDefinition"), dict):
            raise Invalid(f"{at}.typeDefinition is required")
        names.add(_type_definition(item["typeDefinition"], at + ".typeDefinition"))
        if is_input:
            if not isinstance(item.get("isRequired"), bool):
                raise Invalid(f"{at}.isRequired must be true or false")
            values = item.get("supportedValueTypes", ["STATIC_VALUE"])
            if not isinstance(values, list) or not set(values) <= VALUE_TYPES:
                raise Invalid(f"{at}.supportedValueTypes must be a subset of {sorted(VALUE_TYPES)}")
    if len(names) != len(fields):
        raise Invalid(f"{where} has duplicate names")
    return names


def _type_definition(definition: dict[str, Any], at: str) -> str:
    name = definition.get("name")
    if not isinstance(name, str) or not name:
        raise Invalid(f"{at}.name is required")
    if definition.get("type") not in TYPES:
        raise Invalid(f"{at}.type must be one of {sorted(TYPES)}")
    if "fieldType" in definition and definition["fieldType"] not in FIELD_TYPES:
        raise Invalid(f"{at}.fieldType must be one of {sorted(FIELD_TYPES)}")
    options = definition.get("options")
    if not isinstance(options, list):
        raise Invalid(f"{at}.options is required (an array, empty when there are none)")
    for option in options:
        if not isinstance(option, dict) or not all(
            isinstance(option.get(k), str) and option.get(k) for k in ("label", "value")
        ):
            raise Invalid(f"{at}.options: each option needs a label and a value")
    if definition["type"] == "enumeration" and not options:
        raise Invalid(f"{at}.options must list the values of an enumeration")
    return name


def _labels(labels: Any, inputs: set[str], outputs: set[str]) -> None:
    if not isinstance(labels, dict) or not labels:
        raise Invalid("labels must map at least one language to its labels")
    for language, texts in labels.items():
        at = f"labels.{language}"
        if not isinstance(texts, dict) or not isinstance(texts.get("actionName"), str):
            raise Invalid(f"{at}.actionName is required")
        for key, known in (
            ("inputFieldLabels", inputs),
            ("inputFieldDescriptions", inputs),
            ("outputFieldLabels", outputs),
        ):
            unknown = sorted(set(texts.get(key) or {}) - known)
            if unknown:
                raise Invalid(f"{at}.{key} names unknown field(s): {', '.join(unknown)}")
