"""Running the release engine in the test process: one Releaser run on an app's services."""

from __future__ import annotations

from collections.abc import Callable

from flask import Flask

from throttle_app.extensions import db
from throttle_app.release.jobs import OAuthTokens
from throttle_app.release.releaser import Releaser, ReleaseReport
from throttle_app.services import services_of


def run_release(
    app: Flask,
    queue: int,
    sleep: Callable[[float], None] = lambda seconds: None,
    heartbeat: Callable[[], None] = lambda: None,
    stopping: Callable[[], bool] = lambda: False,
) -> ReleaseReport:
    """One run of the queue's release job, as jobs.release builds it (sleeps skipped unless
    `sleep` says otherwise)."""
    with app.app_context():
        services = services_of(app)
        settings = services.settings
        releaser = Releaser(
            settings,
            db.session,
            services.hubspot,
            services.schedule,
            OAuthTokens(services.tokens, settings.retry_base_seconds),
            sleep=sleep,
            heartbeat=heartbeat,
            stopping=stopping,
        )
        try:
            return releaser.run(queue)
        finally:
            db.session.remove()
