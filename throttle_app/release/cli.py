"""Operator commands for queues: `flask throttle queues|pause|resume|drain` (added by ops.cli)."""

from __future__ import annotations

import json

import click
from flask.cli import AppGroup

from throttle_app.extensions import db
from throttle_app.release import queue_admin
from throttle_app.release.schedule import app_schedule

throttle_cli = AppGroup("throttle", help="Operate the throttle: queues, portals.")


def _when(value) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else "-"


@throttle_cli.command("queues")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per queue.")
def queues_command(as_json: bool) -> None:
    """Every queue: backlog, rate, next release, paused/draining, portal, oldest hold expiry."""
    statuses = queue_admin.queue_statuses(db.session)
    if as_json:
        for status in statuses:
            click.echo(json.dumps(status.to_json()))
        return
    header = f"{'id':>5}  {'queue':<32} {'pending':>8} {'claimed':>7}  {'rate':<18} "
    click.echo(header + f"{'next release':<19}  {'state':<9} {'portal':<12} oldest hold expiry")
    for s in statuses:
        state = "paused" if s.paused else "draining" if s.draining else "active"
        portal = "connected" if s.portal_connected else "DISCONNECTED"
        rate = s.rate + (" (override)" if s.overridden else "")
        click.echo(
            f"{s.id:>5}  {s.queue_key:<32} {s.pending:>8} {s.claimed:>7}  {rate:<18} "
            f"{_when(s.next_release_at):<19}  {state:<9} {portal:<12} {_when(s.oldest_hold_expiry)}"
        )


def _control(ref: str, action) -> int:
    try:
        queue_id = queue_admin.find_queue_id(db.session, ref)
    except queue_admin.UnknownQueue as exc:
        raise click.ClickException(str(exc)) from None
    action(db.session, app_schedule(), queue_id)
    return queue_id


@throttle_cli.command("pause")
@click.argument("queue")
def pause_command(queue: str) -> None:
    """Stop releasing QUEUE (id or key); executions stay held."""
    queue_id = _control(queue, lambda s, sch, q: queue_admin.set_paused(s, sch, q, True))
    click.echo(f"queue {queue_id} paused")


@throttle_cli.command("resume")
@click.argument("queue")
def resume_command(queue: str) -> None:
    """Resume releasing QUEUE at its rate."""
    queue_id = _control(queue, lambda s, sch, q: queue_admin.set_paused(s, sch, q, False))
    click.echo(f"queue {queue_id} resumed")


@throttle_cli.command("drain")
@click.argument("queue")
def drain_command(queue: str) -> None:
    """Release QUEUE's whole backlog now, as fast as HubSpot's limit allows."""
    queue_id = _control(queue, queue_admin.drain)
    click.echo(f"queue {queue_id} draining")
