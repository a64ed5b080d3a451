"""Benchmark the durable intake against its ceiling on one gunicorn -k gevent server.

Starts the web role (scripts/entrypoint.sh web) on a fresh benchmark database with the bench
endpoint enabled, then loads it with wrk twice in the same run:
  1. the ceiling: POST /api/bench/ceiling (read body, hash it, parse JSON, answer; no database);
  2. the intake: POST /api/hubspot/action with unique, pre-signed execution requests
     (each is verified, validated and committed to PostgreSQL before its answer).
Prints requests/s, p50 and p99 latency for both and the durable/ceiling ratio. Then does the same
again with gunicorn's stock gevent worker instead of the service's fair one
(throttle_app/ops/web_worker.py), so both workers' figures come from the same run.

    python scripts/bench_intake.py [--seconds 10] [--connections 50] [--threads 2]
                                   [--no-stock-worker]

Needs wrk (apt-get install wrk), PostgreSQL and Redis (scripts/services.sh starts them).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import psycopg2
import requests

from devtools import ROOT
from devtools.bench.environment import DB, REDIS, SECRET, fresh_database, service_env
from throttle_app.hubspot.signatures import v2_signature

WRK_SCRIPT = r"""
-- Each wrk thread walks its own slice of the pre-signed requests, so every request is unique.
local requests_file = os.getenv("BENCH_REQUESTS")
local path = os.getenv("BENCH_PATH")
local lines = {}
for line in io.lines(requests_file) do lines[#lines + 1] = line end
local counter = 1
local threads = {}
function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
  table.insert(threads, thread)
end
function init(args)
  index = id
  step = tonumber(os.getenv("BENCH_THREADS"))
end
function request()
  local line = lines[index]
  index = index + step
  if index > #lines then index = id end
  local tab = line:find("\t")
  local sig, body = line:sub(1, tab - 1), line:sub(tab + 1)
  return wrk.format("POST", path, {
    ["Content-Type"] = "application/json",
    ["X-HubSpot-Signature"] = sig,
    ["X-HubSpot-Signature-Version"] = "v2",
  }, body)
end
function done(summary, latency, requests)
  local errors = summary.errors.status + summary.errors.connect + summary.errors.read
    + summary.errors.write + summary.errors.timeout
  io.write(string.format(
    'RESULT {"requests": %d, "seconds": %.3f, "p50_ms": %.2f, "p99_ms": %.2f, "errors": %d}\n',
    summary.requests, summary.duration / 1e6, latency:percentile(50) / 1000,
    latency:percentile(99) / 1000, errors))
end
"""


def server_env(port: int) -> dict[str, str]:
    return service_env(
        DB,
        REDIS,
        PUBLIC_BASE_URL=f"http://127.0.0.1:{port}",
        PORT=str(port),
        THROTTLE_BENCH_ENDPOINTS="true",
    )


def write_requests(path: Path, count: int, url: str) -> None:
    with path.open("w") as out:
        for n in range(count):
            body = json.dumps(
                {
                    "callbackId": f"bench-{n}-{time.time_ns()}",
                    "origin": {"portalId": 50467010 + n % 3},
                    "context": {"workflowId": 1791092093, "actionId": 1 + n % 5},
                    "object": {"objectId": n, "objectType": "CONTACT"},
                    "inputFields": {"maxThroughPut": "50", "time": "1", "period": "hours"},
                },
                separators=(",", ":"),
            )
            out.write(f"{v2_signature(SECRET, 'POST', url, body.encode())}\t{body}\n")


def run_wrk(base: str, path: str, requests_file: Path, args: argparse.Namespace) -> dict:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(WRK_SCRIPT)
    env = {
        **os.environ,
        "BENCH_REQUESTS": str(requests_file),
        "BENCH_PATH": path,
        "BENCH_THREADS": str(args.threads),
    }
    result = subprocess.run(
        [
            "wrk",
            "-t",
            str(args.threads),
            "-c",
            str(args.connections),
            "-d",
            f"{args.seconds}s",
            "--timeout",
            "10s",
            "-s",
            script.name,
            base,
        ],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    os.unlink(script.name)
    line = next(x for x in result.stdout.splitlines() if x.startswith("RESULT "))
    figures = json.loads(line[len("RESULT ") :])
    figures["rps"] = figures["requests"] / figures["seconds"]
    return figures


def pids() -> list[int]:
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def _stat(pid: int) -> list[str]:
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().rsplit(")", 1)[1].split()


def parent_of(pid: int) -> int | None:
    try:
        return int(_stat(pid)[1])
    except OSError:
        return None


def cpu_seconds(selected: list[int]) -> float:
    """User + system CPU time the processes have used so far (from /proc)."""
    ticks = 0
    for pid in selected:
        try:
            fields = _stat(pid)
        except OSError:  # it exited
            continue
        ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def postgres_pids() -> list[int]:
    found = []
    for pid in pids():
        try:
            with open(f"/proc/{pid}/comm") as comm:
                if comm.read().strip() == "postgres":
                    found.append(pid)
        except OSError:
            continue
    return found


def with_cpu(web: list[int], load: Callable[[], dict]) -> dict:
    """Run `load` and add the CPU microseconds per request of the web workers and PostgreSQL."""
    before_web, before_pg, pg = cpu_seconds(web), cpu_seconds(postgres_pids()), postgres_pids()
    figures = load()
    pg = sorted(set(pg) | set(postgres_pids()))  # backends that started during the run count
    figures["web_us"] = (cpu_seconds(web) - before_web) / figures["requests"] * 1e6
    figures["pg_us"] = (cpu_seconds(pg) - before_pg) / figures["requests"] * 1e6
    return figures


STOCK_WORKER = "gevent"  # gunicorn's own gevent worker, for comparison with the service's


def measure(args: argparse.Namespace, worker_class: str | None) -> dict[str, dict]:
    """Start the web role on a fresh database; load the ceiling, then the durable intake."""
    env = server_env(args.port)
    if worker_class:
        env["GUNICORN_CMD_ARGS"] = f"--worker-class {worker_class}"
    fresh_database(env)
    base = f"http://127.0.0.1:{args.port}"
    server = subprocess.Popen(
        ["bash", "scripts/entrypoint.sh", "web"],
        env=env,
        cwd=ROOT,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
    )
    try:
        for _ in range(100):
            try:
                if requests.get(f"{base}/api/health", timeout=1).ok:
                    break
            except requests.RequestException:
                pass
            time.sleep(0.2)
        with tempfile.TemporaryDirectory() as tmp:
            file = Path(tmp) / "requests.tsv"
            write_requests(file, args.requests, f"{base}/api/hubspot/action")
            warmup = argparse.Namespace(**{**vars(args), "seconds": 2})
            run_wrk(base, "/api/bench/ceiling", file, warmup)
            web = [pid for pid in pids() if parent_of(pid) == server.pid]
            ceiling = with_cpu(web, lambda: run_wrk(base, "/api/bench/ceiling", file, args))
            durable = with_cpu(web, lambda: run_wrk(base, "/api/hubspot/action", file, args))
        stored = psycopg2.connect(DB)
        with stored, stored.cursor() as cur:
            cur.execute("SELECT count(*) FROM action_executions")
            durable["rows"] = cur.fetchone()[0]
        stored.close()
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(30)
    return {"ceiling": ceiling, "durable": durable}


def report(title: str, run: dict[str, dict]) -> None:
    print(title)
    for name, key in (("ceiling (no database)", "ceiling"), ("durable intake", "durable")):
        figures = run[key]
        print(
            f"  {name:22s} {figures['rps']:6.0f} req/s  p50 {figures['p50_ms']:6.2f} ms  "
            f"p99 {figures['p99_ms']:7.2f} ms  errors {figures['errors']}  "
            f"CPU/request: web {figures['web_us']:3.0f} us, PostgreSQL {figures['pg_us']:2.0f} us"
        )
    durable = run["durable"]
    print(f"  rows committed during the intake run: {durable['rows']}", end=" ")
    print(f"(answers: {durable['requests']})")
    if durable["requests"] > durable["rows"]:
        print("  WARNING: more answers than unique requests: the rest were replays (--requests)")
    print(f"  durable / ceiling = {durable['rps'] / run['ceiling']['rps']:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument(
        "--requests",
        type=int,
        default=None,
        help="unique signed requests (default: 8000 per second of load, more than it answers)",
    )
    parser.add_argument(
        "--no-stock-worker",
        action="store_true",
        help="skip the second server with gunicorn's stock gevent worker",
    )
    args = parser.parse_args()
    args.requests = args.requests or 8000 * args.seconds
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: apt-get install -y wrk")

    service = measure(args, None)
    stock = None if args.no_stock_worker else measure(args, STOCK_WORKER)

    print(
        f"gunicorn, 2 gevent workers; wrk -t{args.threads} -c{args.connections} "
        f"-d{args.seconds}s; {os.cpu_count()} cores"
    )
    report("the service's worker (gunicorn.conf.py: FairGeventWorker)", service)
    if stock is not None:
        report("gunicorn's stock gevent worker (-k gevent), for comparison", stock)
        ratio = service["durable"]["rps"] / stock["ceiling"]["rps"]
        print(f"durable (service's worker) / ceiling (stock worker) = {ratio:.2f}")


if __name__ == "__main__":
    main()
