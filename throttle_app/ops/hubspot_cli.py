"""`flask hubspot project|publish-action`: the HubSpot app and action for this deployment
(registered by ops.cli). Both read PUBLIC_BASE_URL, the address HubSpot calls; neither writes
or prints a secret."""

from __future__ import annotations

import json
from pathlib import Path

import click
from flask.cli import AppGroup

from throttle_app.config import Settings
from throttle_app.hubspot import app_definition
from throttle_app.hubspot.action_publisher import ActionPublisher, PublishError
from throttle_app.hubspot.http import session_timeout


def hubspot_commands(settings: Settings) -> AppGroup:
    """The `hubspot` group, for the deployment `settings` describe."""
    group = AppGroup("hubspot", help="The HubSpot app and workflow action for this deployment.")

    @group.command("project")
    @click.option(
        "--out",
        "out",
        required=True,
        type=click.Path(file_okay=False, path_type=Path),
        help="Directory to write the project into (created if missing).",
    )
    @click.option("--name", default="Throttle", show_default=True, help="The app's name.")
    def project_command(out: Path, name: str) -> None:
        """Write a HubSpot developer-platform project (platform 2026.03) for `hs project upload`."""
        base = _public_base_url(settings)
        if not name.strip() or len(name) > 200 or name != name.strip():
            raise click.ClickException("--name must be 1-200 characters without outer spaces")
        for relative, content in app_definition.project_files(base, name).items():
            path = out / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(content, indent=2) + "\n", encoding="utf-8")
            click.echo(f"wrote {path}")
        click.echo(f"next: cd {out} && hs project upload")

    @group.command("publish-action")
    def publish_command() -> None:
        """Create or update the action through the v4 automation API (apps on the older
        platform); a second run updates the same definition."""
        base = _public_base_url(settings)
        app_id, api_key = settings.hubspot_app_id, settings.hubspot_developer_api_key
        if app_id is None or not api_key:
            missing = [
                env
                for env, value in (
                    ("HUBSPOT_APP_ID", app_id),
                    ("HUBSPOT_DEVELOPER_API_KEY", api_key),
                )
                if not value
            ]
            raise click.ClickException(f"publish-action needs {' and '.join(missing)}")
        publisher = ActionPublisher(
            settings.hubspot_api_base, app_id, api_key, session_timeout(settings)
        )
        try:
            result = publisher.publish(base)
        except PublishError as exc:
            raise click.ClickException(f"HubSpot: {exc}") from None
        click.echo(
            f"{result.action} action definition {result.definition_id}"
            f" (revision {result.revision_id or '-'}) for {app_definition.action_url(base)}"
        )
        if result.duplicates:
            click.echo(
                "other definitions with the same actionUrl: " + ", ".join(result.duplicates),
                err=True,
            )

    return group


def _public_base_url(settings: Settings) -> str:
    """PUBLIC_BASE_URL, which HubSpot must reach over https (http:// only in development)."""
    base = settings.public_base_url
    if not base:
        raise click.ClickException(
            "PUBLIC_BASE_URL is not set: it is the https:// address HubSpot calls"
            " (the action URL and the OAuth redirect are built from it)"
        )
    if not base.startswith("https://") and not settings.dev_mode:
        raise click.ClickException("PUBLIC_BASE_URL must be https:// (HubSpot calls it)")
    return base
