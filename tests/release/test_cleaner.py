"""The cleaner: expired leases come back (and push the next window), holds expire, queues with
work are woken, old terminal rows are purged in batches, oldest first."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

from tests.conftest import connect_test_database
from tests.support.release_helpers import backlog, query
from throttle_app.extensions import db
from throttle_app.release import cleaner
from throttle_app.release.schedule import WAKEUPS_KEY, ReleaseSchedule
from throttle_app.services import services_of


def run_clean(app):
    with app.app_context():
        try:
            return cleaner.clean(db.session, ReleaseSchedule(services_of(app).redis), timedelta(0))
        finally:
            db.session.remove()


def test_expired_leases_return_and_count_as_possible_sends(installed):
    queue = backlog(installed, 5, 5, 60)
    query(
        installed,
        "UPDATE action_executions SET state = 'claimed', lease_owner = gen_random_uuid(),"
        " lease_expires_at = now() - interval '1 second'",
    )
    query(installed, "UPDATE throttle_queues SET window_period_seconds = 60")
    report = run_clean(installed)
    assert report.reclaimed == 5
    assert (
        query(
            installed,
            "SELECT count(*) FROM action_executions WHERE state = 'pending'"
            " AND lease_owner IS NULL",
        )[0][0]
        == 5
    )
    (gap,) = query(
        installed,
        "SELECT extract(epoch FROM next_release_at - last_sent_at)"
        " FROM throttle_queues WHERE id = :q",
        q=queue,
    )[0]
    assert gap == 60  # the dead worker may have sent until its lease ended


def test_live_leases_are_left_alone(installed):
    backlog(installed, 3, 5, 60)
    query(
        installed,
        "UPDATE action_executions SET state = 'claimed', lease_owner = gen_random_uuid(),"
        " lease_expires_at = now() + interval '1 minute'",
    )
    assert run_clean(installed).reclaimed == 0


def test_holds_that_ran_out_expire_with_a_reason(installed):
    backlog(installed, 4, 5, 60)
    query(
        installed,
        "UPDATE action_executions SET hold_expires_at = now() - interval '1 second'"
        " WHERE callback_id IN ('b-0', 'b-1')",
    )
    assert run_clean(installed).expired == 2
    rows = query(
        installed,
        "SELECT callback_id, last_failure_reason FROM action_executions"
        " WHERE state = 'expired' ORDER BY callback_id",
    )
    assert [r[0] for r in rows] == ["b-0", "b-1"]
    assert all("hold expired" in r[1] for r in rows)


def test_queues_with_work_are_woken_after_redis_lost_them(installed, redis_conn):
    queue = backlog(installed, 2, 5, 60)
    redis_conn.delete(WAKEUPS_KEY)
    assert run_clean(installed).woken == 1
    assert redis_conn.zscore(WAKEUPS_KEY, str(queue)) is not None


def test_each_queue_is_woken_for_its_own_next_look(installed, redis_conn):
    ready = backlog(installed, 2, 5, 60, name="ready")
    waiting = backlog(installed, 2, 5, 60, name="waiting")  # its window opens in 30 s
    retrying = backlog(installed, 2, 5, 60, name="retrying")  # its rows retry in 20 s
    query(
        installed,
        f"UPDATE throttle_queues SET next_release_at = now() + interval '30 seconds'"
        f" WHERE id = {waiting}",
    )
    query(
        installed,
        f"UPDATE action_executions SET next_attempt_at = now() + interval '20 seconds'"
        f" WHERE queue_id = {retrying}",
    )
    redis_conn.delete(WAKEUPS_KEY)
    now_ms = time.time() * 1000
    assert run_clean(installed).woken == 3
    due = {int(member): score - now_ms for member, score in redis_conn.zscan_iter(WAKEUPS_KEY)}
    assert due[ready] < 1000
    assert 29_000 < due[waiting] < 31_000
    assert 19_000 < due[retrying] < 21_000


def test_paused_queues_are_not_woken(installed, redis_conn):
    backlog(installed, 2, 5, 60)
    query(installed, "UPDATE throttle_queues SET paused = true")
    assert run_clean(installed).woken == 0


def test_purge_deletes_old_terminal_rows_in_batches(installed):
    backlog(installed, 25, 5, 60)
    query(
        installed,
        "UPDATE action_executions SET state = 'completed',"
        " finished_at = now() - interval '40 days' WHERE callback_id <> 'b-0'",
    )
    query(
        installed,
        "UPDATE action_executions SET state = 'completed', finished_at = now()"
        " WHERE callback_id = 'b-0'",
    )
    with installed.app_context():
        deleted = cleaner.purge(db.session, timedelta(days=35), batch_size=10)
        db.session.remove()
    assert deleted == 24
    assert query(installed, "SELECT callback_id FROM action_executions") == [("b-0",)]


def test_a_purge_batch_takes_the_oldest_first_and_the_next_starts_where_it_ended(installed):
    """Rows b-0 .. b-24 finished 64 .. 40 days ago (b-0 the oldest), b-25 just now, b-26 is
    still pending: batches of 10 go oldest first and stop at the cutoff."""
    backlog(installed, 27, 5, 60)
    query(
        installed,
        "UPDATE action_executions SET state = 'completed', finished_at = now()"
        " - make_interval(days => 64 - split_part(callback_id, '-', 2)::int)"
        " WHERE split_part(callback_id, '-', 2)::int < 25",
    )
    query(
        installed,
        "UPDATE action_executions SET state = 'failed', finished_at = now()"
        " WHERE callback_id = 'b-25'",
    )
    (cutoff,) = query(installed, "SELECT now() - interval '35 days'")[0]
    remaining = []
    with installed.app_context():
        after, batches = None, []
        for _ in range(3):
            deleted, after = cleaner.purge_batch(db.session, cutoff, 10, after)
            batches.append(deleted)
            remaining.append(
                [r[0] for r in query(installed, "SELECT callback_id FROM action_executions")]
            )
        db.session.remove()
    assert batches == [10, 10, 5]
    assert "b-9" not in remaining[0] and "b-10" in remaining[0]  # the ten oldest went first
    assert sorted(remaining[2]) == ["b-25", "b-26"]


def test_a_row_claimed_while_the_hold_expires_is_not_expired(installed):
    """The cleaner's snapshot still sees the row pending; a release claims it (and will send it)
    before the cleaner's UPDATE reaches it: the row must stay claimed."""
    backlog(installed, 1, 5, 60)
    query(installed, "UPDATE action_executions SET hold_expires_at = now() - interval '1 second'")
    claimer = connect_test_database()
    with claimer.cursor() as cur:  # a release's claim, not yet committed
        cur.execute(
            "UPDATE action_executions SET state = 'claimed', lease_owner = gen_random_uuid(),"
            " lease_expires_at = now() + interval '1 minute'"
        )
    result: list = []
    cleaning = threading.Thread(target=lambda: result.append(run_clean(installed)))
    cleaning.start()
    try:
        wait_until_blocked(claimer)
    finally:
        claimer.commit()
        claimer.close()
    cleaning.join(10)
    assert result and result[0].expired == 0
    assert query(installed, "SELECT state FROM action_executions") == [("claimed",)]


def wait_until_blocked(holder) -> None:
    """Until another session waits for a lock that `holder`'s transaction holds."""
    pid = holder.get_backend_pid()
    probe = connect_test_database()
    probe.autocommit = True
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with probe.cursor() as cur:
                cur.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE %s = ANY(pg_blocking_pids(pid))",
                    (pid,),
                )
                if cur.fetchone()[0]:
                    return
            time.sleep(0.02)
        raise AssertionError("the cleaner never waited for the claim's row lock")
    finally:
        probe.close()


def test_the_cleaner_job_asks_due_portals_for_their_time_zone(installed, fake, monkeypatch):
    """The scheduled job (jobs.clean) refreshes zones after its other steps; a disconnected
    portal is never asked (oauth/time_zones.py has the details: due, failures, batches)."""
    from tests.support.release_helpers import install_portal
    from throttle_app.oauth.tokens import mark_disconnected
    from throttle_app.release import jobs

    install_portal(installed, fake, 50467011)
    with installed.app_context():
        mark_disconnected(50467011, "BAD_REFRESH_TOKEN: test")
    fake.set_faults(default_time_zone="Europe/Berlin")
    monkeypatch.setattr(jobs, "_bound", (installed, services_of(installed)))  # as bind() does
    report = jobs.clean()
    assert report["time_zones_asked"] == 1
    zones = dict(query(installed, "SELECT portal_id, time_zone FROM oauth_tokens"))
    assert zones == {50467010: "Europe/Berlin", 50467011: None}
    assert fake.stats()["calls"]["account_info"] == {"200": 1}
