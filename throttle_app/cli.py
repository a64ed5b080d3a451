"""Operator commands: `flask throttle ...`."""

from __future__ import annotations

from flask import Flask
from flask.cli import AppGroup

throttle_cli = AppGroup("throttle", help="Operate the throttle: queues, portals.")


def register_cli(app: Flask) -> None:
    from throttle_app.oauth_cli import register_oauth_cli

    app.cli.add_command(throttle_cli)
    register_oauth_cli(app)
