"""A background look at claimed rows while a fault test runs: no lease may get stuck.

A claimed row must complete, or return to pending, within its lease: a row still claimed more
than `grace` seconds after its lease ended (the cleaner reclaims expired leases every cleaner
interval) is stuck, and so is a row that one owner holds longer than `longest` seconds (a
lease renewed forever). Read straight from PostgreSQL, on the database's clock.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import psycopg2

from tests.conftest import connect_test_database

_CLAIMED = """
SELECT callback_id, lease_owner::text,
       EXTRACT(EPOCH FROM clock_timestamp() - lease_expires_at)
FROM action_executions WHERE state = 'claimed'
"""


@dataclass
class LeaseWatch:
    database_url: str
    grace: float
    longest: float
    interval: float = 0.25
    stuck: list[str] = field(default_factory=list)
    samples: int = 0
    most_claimed: int = 0
    longest_held: float = 0.0

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._first_seen: dict[tuple[str, str], float] = {}
        self._thread = threading.Thread(target=self._run, name="lease-watch", daemon=True)

    def __enter__(self) -> LeaseWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        conn = None
        while not self._stop.wait(self.interval):
            try:
                if conn is None:
                    conn = connect_test_database(self.database_url)
                    conn.autocommit = True
                with conn.cursor() as cur:
                    cur.execute(_CLAIMED)
                    rows = cur.fetchall()
            except psycopg2.Error:
                conn = None  # the database may be the fault; look again next time
                continue
            self._look(rows, time.monotonic())
        if conn is not None:
            conn.close()

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
