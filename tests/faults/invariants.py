"""The design's invariants, checked on what a fault test recorded: answers, the rows in
PostgreSQL, and the sends and completions HubSpot saw."""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Iterable

from tests.conftest import connect_test_database
from tests.faults.webhook_load import Delivery


def busiest_span(times: Iterable[float], span: float) -> tuple[int, float | None]:
    """The most events in any half-open interval [t, t + span), and where it starts."""
    ordered = sorted(times)
    best, start = 0, None
    for i, t in enumerate(ordered):
        count = bisect.bisect_left(ordered, t + span) - i
        if count > best:
            best, start = count, t
    return best, start


def by_prefix(callback_ids_with_times: Iterable[tuple[str, float]]) -> dict[str, list[float]]:
    """Times grouped by the callback id's queue prefix (`a-17` -> `a`)."""
    grouped: dict[str, list[float]] = defaultdict(list)
    for callback_id, at in callback_ids_with_times:
        grouped[callback_id.rsplit("-", 1)[0]].append(at)
    return grouped


def rows_for(database_url: str, callback_ids: Iterable[str]) -> dict[str, tuple[str, str | None]]:
    """callback id -> (state, last failure reason) of the stored executions among these ids."""
    conn = connect_test_database(database_url)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(
                "SELECT callback_id, state, last_failure_reason FROM action_executions"
                " WHERE callback_id = ANY(%s)",
                (list(callback_ids),),
            )
            return {cid: (state, reason) for cid, state, reason in cur.fetchall()}
    finally:
        conn.close()


def acknowledged(deliveries: Iterable[Delivery]) -> set[str]:
    """Callback ids that got a 200 at least once."""
    return {d.callback_id for d in deliveries if d.status == 200}


def answers_other_than_200_or_503(deliveries: Iterable[Delivery]) -> list[Delivery]:
    """Every delivery answered neither 200 nor a 503 that carries a usable Retry-After."""
    bad = []
    for d in deliveries:
        if d.status == 200:
            continue
        if d.status == 503 and (d.retry_after or "").isdigit() and int(d.retry_after) >= 1:
            continue
        bad.append(d)
    return bad


def delivered_promptly(
    completions: Iterable[dict], sends: Iterable[tuple[str, float]], slack: float
) -> list[tuple[str, float]]:
    """(callbackId, time) of the completions HubSpot received within `slack` seconds of the send
    the wire saw (the latest send of that callback before it): the rate holds at the sending
    side (claims.py), so HubSpot's own count can exceed N only by requests the path held back."""
    sent: dict[str, list[float]] = defaultdict(list)
    for callback_id, at in sends:
        sent[callback_id].append(at)
    for times in sent.values():
        times.sort()
    prompt = []
    for c in completions:
        times = sent.get(c["callback_id"], [])
        index = bisect.bisect_right(times, c["time"] + 0.05) - 1  # the wire stamps a bit later
        if index >= 0 and c["time"] - times[index] <= slack:
            prompt.append((c["callback_id"], c["time"]))
    return prompt
