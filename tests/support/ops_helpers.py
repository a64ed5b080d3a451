"""Queues with a chosen backlog and holds, and portals with a chosen state, written straight to
PostgreSQL: the operator page, the risk gauge and the cleaner's warning read them back."""

from __future__ import annotations

from datetime import datetime, timedelta

from flask import Flask
from sqlalchemy import text

from throttle_app.extensions import db

OPS_PASSWORD = "operator-password-0123456789abcdef"


def portal(app: Flask, portal_id: int, time_zone: str | None = None, connected: bool = True):
    """An installed portal (tokens never decrypted by these tests), connected or not."""
    with app.app_context():
        db.session.execute(
            text(
                "INSERT INTO oauth_tokens (portal_id, access_token, refresh_token, expires_at,"
                " time_zone, disconnected_at) VALUES (:p, 'x', 'x', now() + interval '1 hour',"
                " :tz, CASE WHEN :connected THEN NULL ELSE now() END)"
            ),
            {"p": portal_id, "tz": time_zone, "connected": connected},
        )
        db.session.commit()
        db.session.remove()


def held_queue(
    app: Flask,
    key: str,
    count: int,
    rate: tuple[int, int],
    oldest_hold: datetime,
    portal_id: int | None = None,
    spacing: timedelta = timedelta(minutes=1),
) -> int:
    """A queue `key` ("portal:workflow:action") holding `count` pending executions, the oldest
    one's hold ending at `oldest_hold`, each next one `spacing` later. Returns its id."""
    portal_text, workflow, action = key.split(":")
    portal_id = portal_id or int(portal_text)
    with app.app_context():
        queue = db.session.execute(
            text(
                "INSERT INTO throttle_queues (queue_key, portal_id, workflow_id, action_id,"
                " max_throughput, period_seconds) VALUES (:key, :p, :w, :a, :n, :t) RETURNING id"
            ),
            {
                "key": key,
                "p": portal_id,
                "w": int(workflow),
                "a": action,
                "n": rate[0],
                "t": rate[1],
            },
        ).scalar_one()
        db.session.execute(
            text(
                "INSERT INTO action_executions (callback_id, queue_id, portal_id, workflow_id,"
                " action_id, max_throughput, period_seconds, hold_expires_at, created_at)"
                " SELECT :key || '-' || n, :q, :p, :w, :a, :n, :t, :hold + n * :spacing,"
                " now() - interval '2 hours' + n * :spacing FROM generate_series(0, :count - 1) n"
            ),
            {
                "key": key,
                "q": queue,
                "p": portal_id,
                "w": int(workflow),
                "a": action,
                "n": rate[0],
                "t": rate[1],
                "hold": oldest_hold,
                "spacing": spacing,
                "count": count,
            },
        )
        db.session.commit()
        db.session.remove()
    return queue
