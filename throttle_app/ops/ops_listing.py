"""What the operator page shows: the queues sorted by expiry risk then backlog, a page at a time,
grouped by portal, each with its outlook (release/risk.py) and its releases per minute.

Cost: one listing statement (queue_admin.queue_statuses: the queues once, the live rows once),
the risk of the queues that hold something (pure arithmetic, release_eta), then for the page's
queues only: their failure reasons (one bounded probe of the live index each) and their chart
(one pipelined HMGET each in Redis). Nothing reads the terminal rows.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from throttle_app.release import queue_admin
from throttle_app.release.queue_admin import QueueStatus
from throttle_app.release.risk import NO_RISK, Risk, assess, next_release
from throttle_app.telemetry.queue_releases import MINUTES, releases_per_minute

log = logging.getLogger(__name__)
PAGE_SIZE = 50
CHART_WIDTH, CHART_HEIGHT = 120, 28


@dataclass(frozen=True)
class QueueRow:
    status: QueueStatus
    risk: Risk
    last_failure: str | None
    per_minute: list[int] | None  # the last hour, oldest minute first; None: unavailable
    next_release: datetime | None = None  # when its next execution would go (risk.py)

    @property
    def state(self) -> str:
        return "paused" if self.status.paused else "draining" if self.status.draining else "active"

    @property
    def chart_points(self) -> str:
        return chart_points(self.per_minute or [])

    @property
    def releases_last_hour(self) -> int:
        return sum(self.per_minute or [])


@dataclass(frozen=True)
class PortalGroup:
    portal_id: int
    installed: bool
    connected: bool
    time_zone: str | None
    queues: list[QueueRow]


@dataclass(frozen=True)
class OpsPage:
    groups: list[PortalGroup]
    page: int
    pages: int
    total_queues: int
    at_risk: int
    backlog: int
    chart_available: bool


def sort_key(status: QueueStatus, risk: Risk) -> tuple:
    """At risk first (soonest expiry first), then the largest backlog, then by id."""
    expiry = risk.expires_at.timestamp() if risk.at_risk and risk.expires_at else float("inf")
    return (not risk.at_risk, expiry, -status.backlog, status.id)


def build_page(
    session: Session,
    connection,
    now: datetime,
    page: int = 1,
    portal_id: int | None = None,
    page_size: int = PAGE_SIZE,
) -> OpsPage:
    """One page of the operator page at `now` (pages count from 1; past the end: the last)."""
    statuses = queue_admin.queue_statuses(session)
    if portal_id is not None:
        statuses = [s for s in statuses if s.portal_id == portal_id]
    risks = {s.id: assess(s.outlook(), now) if s.backlog else NO_RISK for s in statuses}
    ordered = sorted(statuses, key=lambda s: sort_key(s, risks[s.id]))
    pages = max(1, -(-len(ordered) // page_size))
    page = min(max(1, page), pages)
    shown = ordered[(page - 1) * page_size : page * page_size]
    ids = [s.id for s in shown]
    failures = queue_admin.last_failures(session, ids) if ids else {}
    charts, chart_available = _charts(connection, ids, now)
    rows = [
        QueueRow(
            s,
            risks[s.id],
            failures.get(s.id),
            charts.get(s.id),
            next_release(s.outlook(), now) if s.backlog else None,
        )
        for s in shown
    ]
    return OpsPage(
        groups=_by_portal(rows),
        page=page,
        pages=pages,
        total_queues=len(statuses),
        at_risk=sum(1 for risk in risks.values() if risk.at_risk),
        backlog=sum(s.backlog for s in statuses),
        chart_available=chart_available,
    )


def _charts(connection, ids: list[int], now: datetime) -> tuple[dict[int, list[int]], bool]:
    if not ids:
        return {}, True
    try:
        return releases_per_minute(connection, ids, now.timestamp()), True
    except Exception as exc:  # the page answers without its charts when Redis does not
        log.warning("ops page: release charts unavailable: %s", type(exc).__name__)
        return {}, False


def _by_portal(rows: list[QueueRow]) -> list[PortalGroup]:
    """The rows grouped by portal, portals in the order of their first (riskiest) row."""
    groups: dict[int, list[QueueRow]] = {}
    for row in rows:
        groups.setdefault(row.status.portal_id, []).append(row)
    return [
        PortalGroup(
            portal_id,
            queues[0].status.portal_installed,
            queues[0].status.portal_connected,
            queues[0].status.time_zone,
            queues,
        )
        for portal_id, queues in groups.items()
    ]


def chart_points(values: list[int], width: int = CHART_WIDTH, height: int = CHART_HEIGHT) -> str:
    """An SVG polyline's points for `values` (one per minute), scaled to the box, 1px margin."""
    if not values:
        values = [0] * MINUTES
    top = max(values) or 1
    step = (width - 2) / max(len(values) - 1, 1)
    return " ".join(
        f"{1 + i * step:.1f},{height - 1 - (height - 2) * value / top:.1f}"
        for i, value in enumerate(values)
    )
