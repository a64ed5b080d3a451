"""The one place that registers every feature's Click group on the app."""

from __future__ import annotations

from flask import Flask

from throttle_app.oauth.cli import portals_command, tokens_cli
from throttle_app.release.cli import throttle_cli


def register_cli(app: Flask) -> None:
    """`flask throttle ...` (queues, and the OAuth feature's `portals`) and `flask tokens ...`."""
    throttle_cli.add_command(portals_command, "portals")
    app.cli.add_command(throttle_cli)
    app.cli.add_command(tokens_cli)
