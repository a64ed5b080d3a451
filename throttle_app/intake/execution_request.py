"""The HubSpot execution request: parse and validate one webhook body.

HubSpot sends input values as strings and may add keys we do not use; those are ignored.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from throttle_app.input_fields import FieldError, bigint, storable_text
from throttle_app.release.policy import ReleasePolicy, parse_policy
from throttle_app.release.policy_fields import parse_priority, parse_queue_name
from throttle_app.release.rates import Rate, parse_rate

MAX_CALLBACK_ID_BYTES = 255


@dataclass(frozen=True)
class ExecutionRequest:
    callback_id: str
    portal_id: int
    workflow_id: int
    action_id: str
    rate: Rate
    object_id: int | None = None
    object_type: str | None = None
    policy: ReleasePolicy = field(default_factory=ReleasePolicy)
    priority: int = 0
    queue_name: str | None = None

    @cached_property  # read several times per request on the admission path
    def queue_key(self) -> str:
        """The queue's identity: portal, workflow and the action's place in the workflow; or,
        for a named queue, the portal and the name (every workflow naming it shares it)."""
        if self.queue_name is not None:
            return shared_queue_key(self.portal_id, self.queue_name)
        return f"{self.portal_id}:{self.workflow_id}:{self.action_id}"

    @property
    def queue_action_id(self) -> str:
        """The queue's action id, which a throttle_configs override names: the action's own,
        or `queue:<name>` for a named queue (no single action owns it)."""
        if self.queue_name is not None:
            return SHARED_ACTION_PREFIX + self.queue_name
        return self.action_id

    @property
    def queue_workflow_id(self) -> int:
        """The queue's workflow: 0 for a named queue (it belongs to no single workflow)."""
        return 0 if self.queue_name is not None else self.workflow_id


SHARED_ACTION_PREFIX = "queue:"


def shared_queue_key(portal_id: int, name: str) -> str:
    """A named queue's key; "name" is not a workflow id, so it never equals an action's key."""
    return f"{portal_id}:name:{name}"


def parse_execution_request(body: bytes) -> ExecutionRequest:
    """Return the request or raise FieldError (field "body" for malformed JSON)."""
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise FieldError("body", "is not valid JSON") from None
    except RecursionError:  # [[[[... : the size cap still lets 32k levels through
        raise FieldError("body", "is nested too deeply") from None
    if not isinstance(payload, dict):
        raise FieldError("body", "must be a JSON object")
    origin = _object(payload, "origin")
    context = _object(payload, "context", required=False)
    inputs = _object(payload, "inputFields")
    obj = _object(payload, "object", required=False)
    return ExecutionRequest(
        callback_id=_callback_id(payload.get("callbackId")),
        portal_id=_id("origin.portalId", origin.get("portalId")),
        workflow_id=_id("context.workflowId", context.get("workflowId")),
        action_id=_action_id(origin, context),
        rate=parse_rate(inputs.get("maxThroughPut"), inputs.get("time"), inputs.get("period")),
        object_id=_optional_id(obj.get("objectId")),
        object_type=_optional_str(obj.get("objectType")),
        policy=parse_policy(inputs),
        priority=parse_priority(inputs.get("priority")),
        queue_name=parse_queue_name(inputs.get("queueName")),
    )


def _object(payload: dict[str, Any], key: str, required: bool = True) -> dict[str, Any]:
    value = payload.get(key)
    if value is None and not required:
        return {}
    if not isinstance(value, dict):
        raise FieldError(key, "is required and must be an object")
    return value


def _callback_id(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise FieldError("callbackId", "is required and must be a non-empty string")
    if not storable_text(value):
        raise FieldError("callbackId", "must be valid UTF-8 text without NUL characters")
    if len(value.encode()) > MAX_CALLBACK_ID_BYTES:
        raise FieldError("callbackId", f"must be at most {MAX_CALLBACK_ID_BYTES} bytes")
    return value


def _id(field: str, value: object) -> int:
    """A positive integer id (HubSpot sends numbers; numeric strings are accepted too)."""
    number = bigint(value)
    if number is None or number < 1:
        raise FieldError(field, "is required and must be a positive integer")
    return number


def _optional_id(value: object) -> int | None:
    try:
        return _id("object.objectId", value)
    except FieldError:
        return None


def _optional_str(value: object) -> str | None:
    """Informational text (objectType): kept when storable, dropped otherwise."""
    if not isinstance(value, str) or not value or not storable_text(value):
        return None
    return value[:64]


def _action_id(origin: dict[str, Any], context: dict[str, Any]) -> str:
    """`context.actionId` when sent, else actionDefinitionId-actionExecutionIndex (the original)."""
    if context.get("actionId") is not None:
        return str(_id("context.actionId", context["actionId"]))
    definition = origin.get("actionDefinitionId")
    index_info = origin.get("actionExecutionIndexIdentifier") or {}
    index = index_info.get("actionExecutionIndex") if isinstance(index_info, dict) else None
    if definition is None or index is None:
        raise FieldError(
            "context.actionId",
            "is required (or origin.actionDefinitionId with actionExecutionIndex)",
        )
    definition_id = _id("origin.actionDefinitionId", definition)
    if isinstance(index, bool) or not isinstance(index, int) or index < 0:
        raise FieldError("origin.actionExecutionIndexIdentifier.actionExecutionIndex", "invalid")
    return f"{definition_id}-{index}"
