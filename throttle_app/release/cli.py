"""Operator commands for queues: `flask throttle queues|pause|resume|drain` (added by ops.cli)."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime

import click
from flask.cli import AppGroup, with_appcontext
from sqlalchemy.orm import Session

from throttle_app.extensions import db
from throttle_app.release import queue_admin
from throttle_app.release.risk import Risk, assess
from throttle_app.release.schedule import ReleaseSchedule

QueueAction = Callable[[Session, ReleaseSchedule, int], None]


def queue_commands(schedule: ReleaseSchedule) -> AppGroup:
    """The `throttle` group: `queues`, and `pause`/`resume`/`drain` acting through `schedule`."""
    group = AppGroup("throttle", help="Operate the throttle: queues, portals.")
    group.add_command(queues_command)
    controls: list[tuple[str, str, str, QueueAction]] = [
        ("pause", "Stop releasing QUEUE (id or key); executions stay held.", "paused", _pause),
        ("resume", "Resume releasing QUEUE at its rate.", "resumed", _resume),
        (
            "drain",
            "Release QUEUE's whole backlog now, as fast as HubSpot's limit allows.",
            "draining",
            queue_admin.drain,
        ),
    ]
    for name, help_text, done, action in controls:
        group.add_command(_control_command(name, help_text, done, action, schedule))
    return group


def _when(value) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else "-"


@click.command("queues")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per queue.")
@with_appcontext
def queues_command(as_json: bool) -> None:
    """Every queue: backlog, next release, paused/draining, portal, oldest hold expiry, and its
    policy in one line (rate, mode, days, window, start, zone); AT RISK and when the first record
    would expire unthrottled (release/risk.py). A named queue's key is `portal:name:<queueName>`."""
    statuses = queue_admin.queue_statuses(db.session)
    now = datetime.now(UTC)
    risks = [assess(status.outlook(), now) for status in statuses]
    if as_json:
        for status, risk in zip(statuses, risks, strict=True):
            click.echo(json.dumps(status.to_json() | risk_json(risk)))
        return
    header = f"{'id':>5}  {'queue':<32} {'pending':>8} {'claimed':>7}  {'next release':<19}  "
    click.echo(header + f"{'state':<9} {'portal':<12} {'oldest hold expiry':<19}  policy")
    for s, risk in zip(statuses, risks, strict=True):
        state = "paused" if s.paused else "draining" if s.draining else "active"
        portal = "connected" if s.portal_connected else "DISCONNECTED"
        policy = s.policy + (" (override)" if s.overridden else "")
        click.echo(
            f"{s.id:>5}  {s.queue_key:<32} {s.pending:>8} {s.claimed:>7}  "
            f"{_when(s.next_release_at):<19}  {state:<9} {portal:<12} "
            f"{_when(s.oldest_hold_expiry):<19}  {policy}"
            + (f"  AT RISK: expires unthrottled {_when(risk.expires_at)}" if risk.at_risk else "")
        )


def risk_json(risk: Risk) -> dict:
    """The risk fields of a queue's JSON line."""
    return {
        "at_risk": risk.at_risk,
        "drain_eta": risk.drain_eta.isoformat() if risk.drain_eta else None,
        "drain_eta_at_least": risk.eta_at_least,  # a lower bound (risk.py)
        "expires_unthrottled_at": risk.expires_at.isoformat() if risk.expires_at else None,
    }


def _pause(session: Session, schedule: ReleaseSchedule, queue_id: int) -> None:
    queue_admin.set_paused(session, schedule, queue_id, True)


def _resume(session: Session, schedule: ReleaseSchedule, queue_id: int) -> None:
    queue_admin.set_paused(session, schedule, queue_id, False)


def _control_command(
    name: str, help_text: str, done: str, action: QueueAction, schedule: ReleaseSchedule
) -> click.Command:
    @click.command(name, help=help_text)
    @click.argument("queue")
    @with_appcontext
    def command(queue: str) -> None:
        try:
            queue_id = queue_admin.find_queue_id(db.session, queue)
        except queue_admin.UnknownQueue as exc:
            raise click.ClickException(str(exc)) from None
        action(db.session, schedule, queue_id)
        click.echo(f"queue {queue_id} {done}")

    return command
