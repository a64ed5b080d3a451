"""The one place that registers every feature's Click group on the app."""

from __future__ import annotations

from flask import Flask

from throttle_app.oauth.cli import portals_command, token_commands
from throttle_app.ops.hubspot_cli import hubspot_commands
from throttle_app.release.cli import queue_commands
from throttle_app.services import Services


def register_cli(app: Flask, services: Services) -> None:
    """`flask throttle ...` (queues, and the OAuth feature's `portals`), `flask tokens ...` and
    `flask hubspot ...` (the app definition)."""
    throttle = queue_commands(services.schedule)
    throttle.add_command(portals_command, "portals")
    app.cli.add_command(throttle)
    app.cli.add_command(token_commands(services.tokens.cipher))
    app.cli.add_command(hubspot_commands(services.settings))
