"""Operator commands: `flask throttle ...`."""

from __future__ import annotations

from flask import Flask
from flask.cli import AppGroup

throttle_cli = AppGroup("throttle", help="Operate the throttle: queues, portals.")


def register_cli(app: Flask) -> None:
    app.cli.add_command(throttle_cli)
