"""Throttle: a HubSpot custom workflow action that releases records at an exact, durable rate.

Importing the package is cheap and opens nothing: `create_app` loads the web app on call, so
gunicorn's master can read settings before gevent patches its workers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from flask import Flask

    from throttle_app.config import Settings


def create_app(settings: Settings | None = None) -> Flask:
    """Build the web app (see throttle_app.app.create_app)."""
    from throttle_app.app import create_app as build

    return build(settings)
