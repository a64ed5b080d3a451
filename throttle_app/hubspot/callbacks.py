"""The HubSpot API client: one send path, and every call first takes a token from the portal's
bucket (invariant 4). Answers are turned into typed outcomes the release engine acts on.

- 2xx: done (a PARTIAL body lists callbacks HubSpot refused);
- 429: the portal's bucket is blocked for every process until Retry-After (clamped), RateLimited;
- 401: Unauthorized (the caller refreshes once);
- 5xx, 408, read timeouts, connections that broke after the request went out: Transient
  (HubSpot may have acted);
- connect timeouts and refused/unresolvable connections: NotSent (the request never left);
- 400, 404, 409, 410, 413, 422: Rejected, answers that can be about one callback of the batch
  (the caller isolates the bad callbacks by halving);
- any other 4xx (403 missing scope, 405, 415, ...): Refused, an answer about the app, the portal
  or the request as a whole: no callback is at fault, so none may fail for it.
- a call whose bucket wait left too little of the caller's deadline is not made: TooLate.

Every other answer's `X-HubSpot-RateLimit-Remaining` / `-Interval-Milliseconds` headers (the
calls left in HubSpot's rolling window, and the window) are a hint for the portal's bucket that
can only tighten it: none left blocks the bucket for every process until the window has passed,
fewer left than the bucket holds caps it at that many. A 429 follows its Retry-After instead.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

import requests
from urllib3.exceptions import ConnectTimeoutError, MaxRetryError, NewConnectionError

from throttle_app.config import Settings
from throttle_app.hubspot.bucket import TokenBucket
from throttle_app.hubspot.http import (
    error_message,
    hubspot_session,
    json_body,
    parse_retry_after,
    session_timeout,
)
from throttle_app.telemetry.logs import REDACTED

log = logging.getLogger(__name__)

COMPLETE_BATCH_PATH = "/automation/v4/actions/callbacks/complete"
# 4xx answers that can be about one callback of a batch (unknown, expired, completed, invalid).
ITEM_ERROR_STATUSES = frozenset({400, 404, 409, 410, 413, 422})
REMAINING_HEADER = "X-HubSpot-RateLimit-Remaining"
INTERVAL_HEADER = "X-HubSpot-RateLimit-Interval-Milliseconds"


class HubSpotCallError(Exception):
    """A call to HubSpot did not succeed; subclasses say what to do about it."""


class BucketWait(HubSpotCallError):
    """No bucket token within the inline wait: give the work back and come back after `wait`."""

    def __init__(self, wait: float) -> None:
        super().__init__(f"portal bucket empty for {wait:.2f}s")
        self.wait = wait


class RateLimited(HubSpotCallError):
    """HubSpot answered 429: not a failure, nothing was done; retry after `retry_after`."""

    def __init__(self, retry_after: float) -> None:
        super().__init__(f"HubSpot rate limit: retry after {retry_after:.1f}s")
        self.retry_after = retry_after

    @property
    def wait(self) -> float:
        """Seconds before the queue may call again (as BucketWait.wait)."""
        return self.retry_after


class Unauthorized(HubSpotCallError):
    """HubSpot refused the access token (401)."""


class Transient(HubSpotCallError):
    """5xx, read timeout or a broken connection: HubSpot may or may not have acted.
    `answered`: HubSpot answered with an error status (5xx, 408), as opposed to a call whose
    answer never came (timeout, reset) and which may have completed the callbacks."""

    def __init__(self, message: str, answered: bool = False) -> None:
        super().__init__(message)
        self.answered = answered


class NotSent(HubSpotCallError):
    """The connection could not be made: the request surely never reached HubSpot."""


class TooLate(HubSpotCallError):
    """The bucket wait used up the caller's deadline: the request was not sent."""

    wait = 0.0  # the lease ran short: claim afresh at once


class Rejected(HubSpotCallError):
    """A 4xx that can be about one callback: some callback in the request is not acceptable."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.message = message


class Refused(Rejected):
    """A 4xx about the request as a whole (scope, method, media type): not any callback's fault."""


class CallMetrics(Protocol):
    """Where the client reports its calls (telemetry.worker_metrics.RedisMetrics in workers)."""

    def hubspot_call(self, status: int | str) -> None: ...
    def rate_limited(self, retry_after: float) -> None: ...
    def bucket_waited(self, slept: float, acquired: bool) -> None: ...


class HubSpotClient:
    """Calls HubSpot for one process; thread-compatible (one pooled requests.Session)."""

    def __init__(self, settings: Settings, bucket: TokenBucket, metrics: CallMetrics) -> None:
        self._settings = settings
        self._bucket = bucket
        self._metrics = metrics
        self._base = settings.hubspot_api_base

    def send(
        self,
        portal_id: int,
        method: str,
        path: str,
        access_token: str,
        body: object,
        deadline: float | None = None,
        on_start: Callable[[], None] | None = None,
    ):
        """The one send path: bucket token, then the request with timeouts; typed failures.

        `deadline` (time.monotonic()): the call must end by then, timeouts included, so the
        bucket waits no longer than that allows and the request is not sent after it.
        `on_start()` runs once the bucket gave its token, just before the request is issued,
        and again once a body has been written in full: the caller keeps the latest as its
        record of when the send started (the release engine's window anchor), so a process
        that lost the CPU between the two cannot open the next window early."""
        self._take_token(portal_id, deadline)
        headers = {"Authorization": f"Bearer {access_token}"}
        data = json_body(body, on_start)
        if data is not None:
            headers["Content-Type"] = "application/json"
        if on_start is not None:
            on_start()
        try:
            response = hubspot_session().request(
                method,
                self._base + path,
                data=data,
                headers=headers,
                timeout=session_timeout(self._settings),
            )
        except requests.RequestException as exc:
            timeout = isinstance(exc, requests.Timeout)
            self._metrics.hubspot_call("timeout" if timeout else "connection_error")
            raise _typed_failure(exc) from None
        return self._check(portal_id, access_token, response)

    def _take_token(self, portal_id: int, deadline: float | None) -> None:
        max_wait = self._settings.max_inline_wait_seconds
        if deadline is not None:
            max_wait = min(max_wait, deadline - time.monotonic() - self._call_seconds())
            if max_wait < 0:
                raise TooLate("no time left to send before the deadline")
        waited = _Waited()
        acquired = self._bucket.acquire(portal_id, max_wait=max_wait, sleep=waited.sleep)
        self._metrics.bucket_waited(waited.seconds, acquired)
        if not acquired:
            raise BucketWait(max(self._bucket.wait_time(portal_id), 0.05))
        if deadline is not None and time.monotonic() + self._call_seconds() > deadline:
            raise TooLate("no time left to send before the deadline")

    def _call_seconds(self) -> float:
        """Connect and read timeouts: how long the request itself may take."""
        return sum(session_timeout(self._settings))

    def _check(self, portal_id: int, access_token: str, response: requests.Response):
        """The response when it is a 2xx; otherwise the typed failure (module docstring)."""
        status = response.status_code
        self._metrics.hubspot_call(status)
        if status != 429:
            self._follow_rate_hint(portal_id, response.headers)
        if status == 429:
            retry_after = self.retry_after(response.headers.get("Retry-After"))
            self._bucket.block(portal_id, retry_after)
            self._metrics.rate_limited(retry_after)
            log.warning("HubSpot 429 for portal %s: bucket blocked %.1fs", portal_id, retry_after)
            raise RateLimited(retry_after)
        if status == 401:
            raise Unauthorized("HubSpot refused the access token")
        if status >= 500 or status == 408:
            raise Transient(f"HTTP {status}", answered=True)
        if status >= 400:
            message = error_message(response).replace(access_token, REDACTED)
            kind = Rejected if status in ITEM_ERROR_STATUSES else Refused
            raise kind(status, message)
        return response

    def _follow_rate_hint(self, portal_id: int, headers) -> None:
        """Tighten the portal's bucket to what HubSpot says is left (module docstring)."""
        remaining = _header_number(headers.get(REMAINING_HEADER))
        if remaining is None or remaining >= self._bucket.capacity:
            return
        if remaining >= 1:
            self._bucket.cap(portal_id, int(remaining))
            return
        window = _header_number(headers.get(INTERVAL_HEADER))
        seconds = self.retry_after(None) if window is None else window / 1000
        seconds = min(seconds, self._settings.retry_after_max_seconds)
        self._bucket.block(portal_id, seconds)
        log.info("HubSpot: no calls left for portal %s; bucket blocked %.1fs", portal_id, seconds)

    def retry_after(self, header: str | None) -> float:
        """Retry-After in seconds, clamped; the default when http.parse_retry_after reads none."""
        settings = self._settings
        value = parse_retry_after(header)
        if value is None:
            value = settings.retry_after_default_seconds
        return min(max(value, 1.0), settings.retry_after_max_seconds)

    def complete_callbacks(
        self,
        portal_id: int,
        access_token: str,
        callbacks: Sequence[tuple[str, Mapping[str, str]]],
        deadline: float | None = None,
        on_start: Callable[[], None] | None = None,
    ) -> dict[str, str]:
        """Complete (callbackId, outputFields) pairs in one batch call (outputFields holds
        `hs_execution_state` and the action's outputs, all strings); return {refused id:
        reason}.
        `on_start`: as for send()."""
        body = {
            "inputs": [
                {"callbackId": callback_id, "outputFields": dict(fields)}
                for callback_id, fields in callbacks
            ]
        }
        response = self.send(
            portal_id, "POST", COMPLETE_BATCH_PATH, access_token, body, deadline, on_start
        )
        return _partial_errors(response)


class _Waited:
    """The bucket's sleep, measured (for the bucket wait metrics)."""

    def __init__(self) -> None:
        self.seconds = 0.0

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)
        self.seconds += seconds


def _typed_failure(exc: requests.RequestException) -> HubSpotCallError:
    """NotSent only when the connection itself failed (nothing can have reached HubSpot); a
    read timeout or a connection dropped mid-answer may have completed the callbacks."""
    if isinstance(exc, requests.ConnectTimeout) or _connect_failed(exc):
        return NotSent(f"connect failed: {type(exc).__name__}")
    if isinstance(exc, requests.Timeout):
        return Transient("timeout")
    return Transient(f"connection error: {type(exc).__name__}")


def _connect_failed(exc: requests.RequestException) -> bool:
    if not isinstance(exc, requests.ConnectionError) or isinstance(
        exc, requests.exceptions.SSLError
    ):
        return False
    reason = exc.args[0] if exc.args else None
    if isinstance(reason, MaxRetryError):
        reason = reason.reason
    return isinstance(reason, NewConnectionError | ConnectTimeoutError)


def _header_number(value: str | None) -> float | None:
    """A rate-limit header's non-negative number, or None when absent or unreadable."""
    try:
        number = float(value) if value is not None else None
    except ValueError:
        return None
    return number if number is not None and math.isfinite(number) and number >= 0 else None


def _partial_errors(response: requests.Response) -> dict[str, str]:
    """A 2xx body `{"status": "PARTIAL", "errors": [...]}` lists refused callbacks."""
    if not response.content:
        return {}
    try:
        payload = response.json()
    except ValueError:
        return {}
    if not isinstance(payload, dict):
        return {}
    errors = payload.get("errors") or []
    refused = {}
    for error in errors if isinstance(errors, list) else []:
        if isinstance(error, dict) and error.get("callbackId"):
            reason = f"{error.get('category') or 'ERROR'}: {error.get('message') or 'refused'}"
            refused[str(error["callbackId"])] = reason[:500]
    return refused
