"""Benchmark the release engine: real RQ workers (with their release clocks), PostgreSQL, Redis
and the fake HubSpot at HubSpot's limits (110 calls / 10 s per portal, batches of <= 100).

Two scenarios, each from a fresh benchmark database:
  throughput  one portal, 10,000 held executions, rate 10,000/s: HubSpot's limit is the
              bottleneck; reports completions/s, calls against the token bucket's allowance,
              average batch size and 429s;
  rates       three queues (100 per 2 s, 50 per 1 s, 10 per 1 s) with a backlog each: reports the
              largest count in any window of T against N and the sustained rate against N/T;
  reads       the rates scenario's tables without running it: only the timed reads below.

Production-sized tables (devtools/bench/preload.py): `--queues-idle K` adds K queues without a
backlog and `--terminal-rows N` N terminal executions spread over them, before the scenario's
own rows. The rates and reads scenarios then time a release job's next_look, the metrics
scrape, its backlog query and the queue listing on those tables (devtools/bench/reads.py).

    python scripts/bench_release.py [--workers 1] [--scenario throughput|rates|reads|all]
        [--terminal-rows N --queues-idle K] [--rounds R] [--latency SECONDS]

`--latency SECONDS`: the fake HubSpot answers every callback call that much later (HubSpot's
real latency is 0.1-0.3 s). The counts are of send starts as the fake HubSpot receives them
(it times a call when its request line arrives, before it waits), so the rates report what
HubSpot would see. Windows leave the sender T plus a few milliseconds apart (they count from the
previous window's send start), so the receiver's own timing noise can show one window's calls
a fraction of a millisecond inside T of the next: "closest windows" prints the smallest gap
between the calls of consecutive windows as the fake saw it.

`--rounds R` repeats the rates (or reads) scenario R times on the same tables, with new queues
each round, and prints the machine's load average before each round.
"""

from __future__ import annotations

import argparse
import bisect
import itertools
import os
import signal
import subprocess
import sys
import time

import psycopg2
from flask import Flask

from devtools import ROOT
from devtools.bench import preload, reads
from devtools.bench.environment import (
    DB,
    PORTAL,
    REDIS,
    SECRET,
    installed_app,
    release_schedule,
    service_env,
)
from fake_hubspot import FakeHubSpot
from throttle_app.config import Settings


def hold(name: str, count: int, max_throughput: int, seconds: int) -> int:
    conn = psycopg2.connect(DB)
    with conn, conn.cursor() as cur:
        cur.execute(
            "INSERT INTO throttle_queues (queue_key, portal_id, workflow_id, action_id,"
            " max_throughput, period_seconds) VALUES (%s, %s, 1, %s, %s, %s) RETURNING id",
            (f"{PORTAL}:1:{name}", PORTAL, name, max_throughput, seconds),
        )
        queue = cur.fetchone()[0]
        cur.execute(
            "INSERT INTO action_executions (callback_id, queue_id, portal_id, workflow_id,"
            " action_id, max_throughput, period_seconds, hold_expires_at)"
            " SELECT %s || '-' || n, %s, %s, 1, %s, %s, %s, now() + interval '7 days'"
            " FROM generate_series(0, %s - 1) AS n",
            (name, queue, PORTAL, name, max_throughput, seconds, count),
        )
    conn.close()
    return queue


def run(
    env: dict[str, str], app: Flask, workers: int, queues: list[int], total: int, fake: FakeHubSpot
) -> float:
    processes = [
        subprocess.Popen(
            ["bash", "scripts/entrypoint.sh", "worker"],
            env=env,
            cwd=ROOT,
            start_new_session=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(workers)
    ]
    started = time.monotonic()
    earlier = len({c["callback_id"] for c in fake.completions()})  # an earlier round's
    try:
        time.sleep(1.0)
        with app.app_context():
            release_schedule(app).wake(queues)
        while len({c["callback_id"] for c in fake.completions()}) < earlier + total:
            if time.monotonic() - started > 300:
                sys.exit("benchmark timed out")
            time.sleep(0.2)
    finally:
        for process in processes:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(30)
    return time.monotonic() - started


def throughput(env: dict[str, str], app: Flask, fake: FakeHubSpot, workers: int) -> None:
    queue = hold("bulk", 10_000, 10_000, 1)
    run(env, app, workers, [queue], 10_000, fake)
    completions = fake.completions()
    times = sorted(c["time"] for c in completions)
    elapsed = times[-1] - times[0]
    calls = len({c["batch_id"] for c in completions})
    settings = app.config["THROTTLE_SETTINGS"]
    allowance = settings.bucket_capacity + settings.bucket_refill_per_second * elapsed
    print(
        f"throughput: {len(completions)} completions in {elapsed:.2f}s ="
        f" {len(completions) / elapsed:.0f}/s; {calls} calls against a bucket allowance of"
        f" {allowance:.1f} ({calls / allowance:.0%}); average batch"
        f" {len(completions) / calls:.1f}; 429s: {fake.stats()['rate_limited']}"
    )


RATE_SPECS = [("a", 100, 2, 1000), ("b", 50, 1, 500), ("c", 10, 1, 100)]  # name, N, T, backlog


def round_specs(round_: int) -> list[tuple[str, int, int, int]]:
    """The rates scenario's queues for one round: round 0 is a, b, c; round r is ar, br, cr."""
    suffix = str(round_) if round_ else ""
    return [(name + suffix, n, t, count) for name, n, t, count in RATE_SPECS]


def table_reads(env, app, fake, workers: int, round_: int = 0) -> None:
    queues = [hold(name, count, n, t) for name, n, t, count in round_specs(round_)]
    reads.report(app, env, queues)


def rates(env, app, fake, workers: int, round_: int = 0) -> None:
    specs = round_specs(round_)
    queues = [hold(name, count, n, t) for name, n, t, count in specs]
    reads.report(app, env, queues)
    run(env, app, workers, queues, sum(s[3] for s in specs), fake)
    completions = fake.completions()
    for name, n, t, _ in specs:
        times = sorted(c["time"] for c in completions if c["callback_id"].startswith(f"{name}-"))
        largest = max(bisect.bisect_left(times, x + t) - i for i, x in enumerate(times))
        sustained = (len(times) - n) / (times[-1] - times[0])
        calls = sorted(set(times))  # one time per call: when the fake received it
        closest = min((b - a for a, b in itertools.pairwise(calls) if b - a > t / 2), default=0.0)
        print(
            f"rates: {n} per {t}s: largest count in any {t}s span {largest} (N = {n});"
            f" sustained {sustained:.2f}/s against {n / t:.2f}/s"
            f" ({sustained / (n / t) - 1:+.1%}); closest windows {closest * 1000:.1f} ms apart;"
            f" 429s: {fake.stats()['rate_limited']}"
        )


def uptime() -> str:
    """The load averages (1, 5, 15 minutes): the machine is shared, a figure needs its load."""
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f}, {five:.2f}, {fifteen:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument(
        "--scenario", choices=["throughput", "rates", "reads", "all"], default="all"
    )
    parser.add_argument(
        "--rounds", type=int, default=1, help="rates or reads: repeat on the same tables"
    )
    parser.add_argument(
        "--latency",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="the fake HubSpot answers each callback call this much later (default 0)",
    )
    preload.add_options(parser)
    args = parser.parse_args()
    if args.latency < 0:
        parser.error("--latency must be >= 0")
    if args.rounds > 1 and args.scenario not in ("rates", "reads"):
        parser.error("--rounds repeats the rates or the reads scenario only")
    bucket = Settings.from_env(service_env(DB, REDIS))
    print(
        f"{args.workers} worker(s), {os.cpu_count()} cores; bucket {bucket.bucket_capacity:g}"
        f" + {bucket.bucket_refill_per_second:g}/s per portal; fake HubSpot limit 110 per 10 s,"
        f" answering {args.latency:g}s after each callback call"
    )
    print(f"tables: {args.terminal_rows:,} terminal rows over {args.queues_idle:,} idle queues")
    scenarios = {"rates": rates, "reads": table_reads}
    for scenario in ["throughput", "rates"] if args.scenario == "all" else [args.scenario]:
        with FakeHubSpot(
            client_id="bench", client_secret=SECRET, callback_latency=args.latency
        ) as fake:
            env, app = installed_app(fake, **reads.READS_ENV)
            preload.tables(DB, PORTAL, args)
            if scenario == "throughput":
                throughput(env, app, fake, args.workers)
                continue
            for round_ in range(args.rounds):
                print(f"round {round_ + 1} of {args.rounds}: {uptime()}")
                scenarios[scenario](env, app, fake, args.workers, round_)


if __name__ == "__main__":
    main()
