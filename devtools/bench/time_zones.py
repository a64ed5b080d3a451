"""Benchmark the cleaner's time zone step: one pass with portals due for their daily check
(each ask is one account-details call to the fake HubSpot, optionally slowed to HubSpot's own
latency), and passes with none due over many connected portals, on a fresh benchmark database.

    python scripts/bench_time_zones.py [--portals 2000] [--batch 1 3] [--latency 0 0.25]
"""

from __future__ import annotations

import argparse
import statistics
import time
from datetime import UTC, datetime, timedelta

import psycopg2

from devtools.bench.environment import DB, PORTAL, SECRET, installed_app
from fake_hubspot import FakeHubSpot
from throttle_app.extensions import db
from throttle_app.hubspot.oauth_api import TokenGrant, TokenInfo
from throttle_app.release import cleaner
from throttle_app.services import services_of


def sql(statement: str, *params: object) -> None:
    conn = psycopg2.connect(DB)
    with conn, conn.cursor() as cur:
        cur.execute(statement, params)
    conn.close()


def install(app, fake: FakeHubSpot, portal_id: int) -> int:
    """One more portal installed at the fake (a real token: its zone can be asked)."""
    issued = fake.issue_tokens(portal_id)
    grant = TokenGrant(
        issued["access_token"], issued["refresh_token"], 1800, datetime.now(UTC), portal_id
    )
    info = TokenInfo(portal_id, None, None, ("automation", "oauth"), 1, "bench")
    with app.app_context():
        services_of(app).tokens.store_install(grant, info)
    return portal_id


def one_pass(app) -> tuple[float, int]:
    """Seconds one whole cleaner pass took, and how many portals it asked."""
    services = services_of(app)
    with app.app_context():
        started = time.perf_counter()
        try:
            report = cleaner.clean(
                db.session, services.schedule, timedelta(0), zones=services.zones
            )
        finally:
            db.session.remove()
    return time.perf_counter() - started, report.time_zones_asked


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--portals", type=int, default=2000, help="connected, checked today")
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 3])
    parser.add_argument("--latency", type=float, nargs="+", default=[0.0, 0.25])
    args = parser.parse_args()
    with FakeHubSpot(client_id="bench", client_secret=SECRET) as fake:
        _, app = installed_app(fake)
        due = [PORTAL, *(install(app, fake, PORTAL + n) for n in range(1, max(args.batch)))]
        # More connected portals, checked within the day (copied rows: never decrypted).
        sql(
            "INSERT INTO oauth_tokens (portal_id, access_token, refresh_token, expires_at,"
            " time_zone, time_zone_checked_at, created_at, updated_at)"
            " SELECT 100000 + n, access_token, refresh_token, expires_at, 'UTC',"
            " now() - interval '1 hour', now(), now()"
            " FROM oauth_tokens, generate_series(1, %s) n WHERE portal_id = %s",
            args.portals,
            PORTAL,
        )
        zones = services_of(app).zones
        for batch in args.batch:
            for latency in args.latency:
                zones.batch = batch
                fake.set_faults(account_info_latency=latency)
                sql(
                    "UPDATE oauth_tokens SET time_zone_checked_at = NULL WHERE portal_id = ANY(%s)",
                    due[:batch],
                )
                seconds, asked = one_pass(app)
                idle = [one_pass(app)[0] for _ in range(5)]
                print(
                    f"batch {batch}, HubSpot latency {latency:.2f}s: a pass asking {asked}"
                    f" portal(s) {seconds * 1000:.0f} ms; a pass with none due over"
                    f" {args.portals + 1:,} portals: median {statistics.median(idle) * 1000:.1f} ms"
                )


if __name__ == "__main__":
    main()
