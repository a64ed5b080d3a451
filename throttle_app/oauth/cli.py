"""Operator commands for installs and tokens: `flask throttle portals`, `flask tokens rotate`
(registered by ops.cli).

Key rotation, step by step:
1. Put the new key first in TOKEN_ENCRYPTION_KEY ("new,old") and restart every process, so all
   of them decrypt with both keys and encrypt with the new one.
2. Run `flask tokens rotate`: every row is re-encrypted under the new key, in batches, while the
   service runs. It exits 0 only when no row is left under another key.
3. Remove the old key from TOKEN_ENCRYPTION_KEY and restart.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import click
from flask.cli import AppGroup, with_appcontext

from throttle_app.oauth import rotation
from throttle_app.oauth.cipher import TokenCipher


def token_commands(cipher: TokenCipher) -> AppGroup:
    """The `tokens` group: `rotate` re-encrypts under `cipher`'s first key."""
    group = AppGroup("tokens", help="Manage the encrypted OAuth tokens.")

    @group.command("rotate", help="Re-encrypt every stored token under the first key.")
    @click.option("--batch-size", default=100, show_default=True, type=click.IntRange(1, 10_000))
    def rotate_command(batch_size: int) -> None:
        report = rotation.rotate_keys(cipher, batch_size=batch_size)
        click.echo(f"re-encrypted {report.rotated} portal(s) under key {report.key_id}")
        if report.failed:
            portals = ", ".join(map(str, report.failed))
            click.echo(f"cannot decrypt portal(s) {portals} with any configured key", err=True)
        if report.remaining:
            click.echo(
                f"{report.remaining} row(s) are still under another key: run again", err=True
            )
            raise SystemExit(1)

    return group


def _when(moment: datetime | None) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ") if moment else "-"


def portal_line(portal: rotation.PortalStatus) -> str:
    """One line: portal, domain, connection state, time zone, token expiry, key ids."""
    if portal.connected:
        state = f"connected (installed {_when(portal.installed_at)})"
    else:
        reason = portal.disconnect_reason or "unknown reason"
        state = f"DISCONNECTED since {_when(portal.disconnected_at)}: {reason}"
    zone = portal.time_zone or "UTC (time zone not known yet)"
    return (
        f"{portal.portal_id}  {portal.hub_domain or '-'}  {state}  zone {zone}  "
        f"token expires {_when(portal.expires_at)}  key {','.join(portal.key_ids)}"
    )


@click.command(
    "portals", help="List installed portals: connected or not, time zone, token expiry, key id."
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per portal per line.")
@with_appcontext
def portals_command(as_json: bool) -> None:
    found = rotation.list_portals()
    for portal in found:
        click.echo(json.dumps(portal.to_json()) if as_json else portal_line(portal))
    if not found and not as_json:
        click.echo("no portal has installed the app")
