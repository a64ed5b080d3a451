"""A background look at claimed rows while a fault test runs: no lease may get stuck.

A claimed row must complete, or return to pending, within its lease: a row still claimed more
than `grace` seconds after its lease ended (the cleaner reclaims expired leases every cleaner
interval) is stuck, and so is a row that one owner holds longer than `longest` seconds (a
lease renewed forever). Read straight from PostgreSQL, on the database's clock.
"""

from __future__ import annotations

import time

import psycopg2

from tests.conftest import connect_test_database
from tests.support.processes import Periodic
from throttle_app.config import Settings

_CLAIMED = """
SELECT callback_id, lease_owner::text,
       EXTRACT(EPOCH FROM clock_timestamp() - lease_expires_at)
FROM action_executions WHERE state = 'claimed'
"""
GRACE_MARGIN_SECONDS = 3.0


class LeaseWatch(Periodic):
    """Looks at the claimed rows every `every` seconds while its with-block runs."""

    def __init__(self, database_url: str, grace: float, longest: float, every: float = 0.25):
        super().__init__(every, "lease-watch")
        self.database_url = database_url
        self.grace = grace
        self.longest = longest
        self.stuck: list[str] = []
        self.samples = 0
        self.most_claimed = 0
        self.longest_held = 0.0
        self._first_seen: dict[tuple[str, str], float] = {}
        self._conn = None

    @classmethod
    def for_settings(cls, database_url: str, settings: Settings) -> LeaseWatch:
        """Bounds from the stack's settings: an expired lease is reclaimed by the next cleaner
        pass, and a row is held at most one release job plus one lease."""
        return cls(
            database_url,
            grace=settings.cleaner_interval_seconds + GRACE_MARGIN_SECONDS,
            longest=settings.release_job_seconds + settings.lease_seconds + GRACE_MARGIN_SECONDS,
        )

    def __exit__(self, *exc_info: object) -> None:
        super().__exit__(*exc_info)
        if self._conn is not None:
            self._conn.close()

    def tick(self) -> None:
        try:
            if self._conn is None:
                self._conn = connect_test_database(self.database_url)
                self._conn.autocommit = True
            with self._conn.cursor() as cur:
                cur.execute(_CLAIMED)
                rows = cur.fetchall()
        except psycopg2.Error:
            self._conn = None  # the database may be the fault; look again next time
            return
        self._look(rows, time.monotonic())

    def _look(self, rows: list[tuple[str, str, float]], now: float) -> None:
        self.samples += 1
        self.most_claimed = max(self.most_claimed, len(rows))
        for callback_id, owner, overdue in rows:
            first = self._first_seen.setdefault((callback_id, owner), now)
            held = now - first
            self.longest_held = max(self.longest_held, held)
            if float(overdue) > self.grace:
                self.stuck.append(f"{callback_id}: claimed {float(overdue):.1f}s past its lease")
            elif held > self.longest:
                self.stuck.append(f"{callback_id}: held {held:.1f}s by one owner")
