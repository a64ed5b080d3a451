"""CI smoke test of the one-command local stack: `bash scripts/smoke.sh` (about 30 s once .venv
is built; logs in .cache/smoke/).

Starts scripts/run.sh in the background on its own ports, its own Redis (a private redis-server
on a free port, gone afterwards) and its own PostgreSQL database (dropped first; run.sh creates
and migrates it), so it never touches a developer's stack or other test runs. Waits for
/api/health and the fake HubSpot, checks the worker and scheduler liveness probes and the /rq
dashboard's login, runs the demo (`--count 60 --timeout 60`: OAuth install, signed webhooks,
releases at their rates), then stops the stack with SIGTERM and checks that honcho stopped every
process without SIGKILL and each exited 0, that no process the stack had started is left, that
both ports are closed, and that the worker and scheduler signed off in Redis.

Overrides [defaults]: SMOKE_PORT, SMOKE_FAKE_PORT [free ports]; SMOKE_REDIS_SERVER [none: a
private redis-server; when set, e.g. redis://127.0.0.1:6379, database SMOKE_REDIS_DB [14] of
that server is used and emptied with FLUSHDB first]; SMOKE_DATABASE [throttle_smoke; must
start with throttle_smoke, it is dropped first]; SMOKE_START_TIMEOUT [180 s, includes building
.venv]; SMOKE_STOP_TIMEOUT [60 s].
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import redis
import requests
from honcho.environ import parse_procfile

from devtools import ROOT, demo
from devtools.database import drop_database
from devtools.env_file import read_env_file
from devtools.local_stack import PROCFILE, StackSettings
from devtools.ports import free_port, port_answers
from devtools.process_tree import Started, command_line, descendants, still_running
from devtools.redis_server import private_redis
from workers.healthcheck import schedulers, workers

SMOKE_DIR = ROOT / ".cache" / "smoke"
HONCHO_SIGTERM_STATUS = 143  # honcho's exit status when SIGTERM stopped it


class SmokeFailure(Exception):
    """The smoke run failed; the message says what (one line)."""


@dataclass(frozen=True)
class SmokeSettings:
    """The run's ports, database, Redis and timeouts (module docstring: the overrides)."""

    port: int
    fake_port: int
    database: str
    redis_server: str | None
    redis_db: int
    start_timeout: float
    stop_timeout: float

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> SmokeSettings:
        port = int(env.get("SMOKE_PORT") or free_port())
        fake_port = int(env.get("SMOKE_FAKE_PORT") or free_port())
        while fake_port == port:
            fake_port = free_port()
        settings = cls(
            port=port,
            fake_port=fake_port,
            database=env.get("SMOKE_DATABASE", "throttle_smoke"),
            redis_server=(env.get("SMOKE_REDIS_SERVER") or "").rstrip("/") or None,
            redis_db=int(env.get("SMOKE_REDIS_DB", "14")),
            start_timeout=float(env.get("SMOKE_START_TIMEOUT", "180")),
            stop_timeout=float(env.get("SMOKE_STOP_TIMEOUT", "60")),
        )
        if not re.fullmatch(r"throttle_smoke[a-z0-9_]*", settings.database):
            raise SmokeFailure(
                "SMOKE_DATABASE must start with throttle_smoke (it is dropped), "
                f"got '{settings.database}'"
            )
        return settings


def say(message: str) -> None:
    print(f"smoke: {message}", file=sys.stderr, flush=True)


def wait_until(check: Callable[[], bool], timeout: float, what: str, stack: Stack) -> None:
    """Poll `check` until true; SmokeFailure when `timeout` passes or the stack exits first."""
    deadline = time.monotonic() + timeout
    while not check():
        if stack.process.poll() is not None:
            raise SmokeFailure(f"run.sh exited (status {stack.process.returncode}) before {what}")
        if time.monotonic() > deadline:
            raise SmokeFailure(f"no {what} within {timeout:g}s")
        time.sleep(0.25)


def http_status(url: str, auth: tuple[str, str] | None = None) -> int:
    """The status of a GET (0 when nothing answers)."""
    try:
        return requests.get(url, auth=auth, timeout=5).status_code
    except requests.RequestException:
        return 0


@contextlib.contextmanager
def smoke_redis(settings: SmokeSettings) -> Iterator[str]:
    """The Redis URL of the run, emptied: a private server, or one database of the given one
    (FLUSHDB of that database only: others share the server)."""
    if settings.redis_server is None:
        with private_redis(SMOKE_DIR) as url:
            yield url
        return
    url = f"{settings.redis_server}/{settings.redis_db}"
    redis.Redis.from_url(url, socket_connect_timeout=1).flushdb()
    yield url


@dataclass
class Stack:
    """scripts/run.sh running in the background, its output in `log`; `settings` are the ones
    it reads from its environment (its URLs, database, Redis, secrets file)."""

    process: subprocess.Popen
    log: Path
    settings: StackSettings

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


def stack_env(settings: SmokeSettings, redis_url: str) -> dict[str, str]:
    """The environment run.sh gets: this one, with the run's ports, database and Redis."""
    server, db = redis_url.rsplit("/", 1)
    return {
        **os.environ,
        "PORT": str(settings.port),
        "FAKE_PORT": str(settings.fake_port),
        "DEV_DATABASE": settings.database,
        "DEV_REDIS_SERVER": server,
        "DEV_REDIS_DB": db,
    }


@contextlib.contextmanager
def running_stack(settings: SmokeSettings, env: Mapping[str, str]) -> Iterator[Stack]:
    """run.sh with `env`; whatever is left of it is stopped when the block ends."""
    log = SMOKE_DIR / "run.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            ["bash", "scripts/run.sh"], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
        )
    stack = Stack(process, log, StackSettings.from_env(env))
    try:
        yield stack
    finally:
        if process.poll() is None:
            say(f"stopping the stack (run.sh {process.pid})")
            leftovers = descendants(process.pid)
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(settings.stop_timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            kill_survivors(leftovers)


def kill_survivors(processes: list[Started]) -> list[str]:
    """SIGKILL those of `processes` that still run; returns their PIDs and command lines."""
    survivors = []
    for process in processes:
        if still_running(process):
            survivors.append(f"{process.pid} {command_line(process.pid)}")
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGKILL)
    return survivors


def check_running(settings: SmokeSettings, stack: Stack) -> None:
    """The stack answers: health, the fake, both liveness probes, the dashboard's login."""
    started = time.monotonic()
    api, fake = stack.settings.api, stack.settings.fake
    wait_until(
        lambda: http_status(f"{api}/api/health") == 200,
        settings.start_timeout,
        f"healthy {api}/api/health",
        stack,
    )
    wait_until(lambda: http_status(f"{fake}/_fake/stats") == 200, 30, "fake HubSpot", stack)
    for flag in ([], ["--scheduler"]):
        wait_until(
            lambda flag=flag: probe_ok(flag, stack.settings.redis_url),
            30,
            f"live {' '.join(['workers.healthcheck', *flag])}",
            stack,
        )
    say(f"stack up after {time.monotonic() - started:.0f}s")
    check_dashboard(stack.settings)


def probe_ok(flags: list[str], redis_url: str) -> bool:
    """`python -m workers.healthcheck FLAGS` (the chart's liveness probe) answers healthy."""
    probe = subprocess.run(
        [sys.executable, "-m", "workers.healthcheck", *flags],
        env={**os.environ, "REDIS_URL": redis_url},
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if probe.returncode == 0:
        say(f"probe: {probe.stdout.strip()}")
    return probe.returncode == 0


def check_dashboard(settings: StackSettings) -> None:
    """/rq/ asks for a login, refuses a wrong password and accepts the dev credentials."""
    dev = read_env_file(settings.env_file)
    user, password = dev["THROTTLE_DASHBOARD_USERNAME"], dev["THROTTLE_DASHBOARD_PASSWORD"]
    url = f"{settings.api}/rq/"
    status = http_status(url)
    if status == 404:
        say("dashboard: /rq/ is not mounted (the app does not call init_dashboard)")
        return
    if status != 401:
        raise SmokeFailure(f"/rq/ answered {status} without credentials (expected 401)")
    if http_status(url, (user, "wrong")) != 401:
        raise SmokeFailure("/rq/ accepted a wrong password")
    if http_status(url, (user, password)) != 200:
        raise SmokeFailure("/rq/ refused the dashboard credentials from the dev env")
    say("dashboard: /rq/ asks for a login and accepts the dev credentials")


def stop_and_check(settings: SmokeSettings, stack: Stack) -> None:
    """SIGTERM to run.sh (honcho by then); every process must stop gracefully and be gone."""
    processes = descendants(stack.process.pid)
    say(f"stopping run.sh with SIGTERM ({len(processes)} processes under it)")
    began = time.monotonic()
    stack.process.send_signal(signal.SIGTERM)
    try:
        status = stack.process.wait(settings.stop_timeout)
    except subprocess.TimeoutExpired:
        raise SmokeFailure(
            f"run.sh still running {settings.stop_timeout:g}s after SIGTERM"
        ) from None
    say(f"run.sh exited with status {status} after {time.monotonic() - began:.1f}s")
    check_clean_stop(stack, status)
    check_nothing_left(stack.settings, processes)
    connection = redis.Redis.from_url(stack.settings.redis_url)
    live = [w.name for w in workers(connection) if w.alive]
    live += [s.name for s in schedulers(connection) if s.alive]
    if live:
        raise SmokeFailure(f"still registered as alive in Redis: {', '.join(live)}")


def check_clean_stop(stack: Stack, status: int) -> None:
    """honcho stopped for our SIGTERM, needed no SIGKILL, and every process exited 0."""
    output = stack.log.read_text(errors="replace")
    if status != HONCHO_SIGTERM_STATUS:
        raise SmokeFailure(f"run.sh exited {status}, not {HONCHO_SIGTERM_STATUS} (SIGTERM)")
    if "sending SIGKILL" in output:
        raise SmokeFailure("a process needed SIGKILL to stop (see run.log)")
    stopped = re.findall(r"\| (\S+) stopped \(rc=(-?\d+)\)", output)
    failed = [f"{name} rc={rc}" for name, rc in stopped if rc != "0"]
    if len(stopped) != len(parse_procfile(PROCFILE.read_text()).processes) or failed:
        raise SmokeFailure(f"not every process stopped cleanly: {failed or stopped}")


def check_nothing_left(settings: StackSettings, processes: list[Started]) -> None:
    """No process that ran under the stack still runs; neither port answers."""
    survivors = kill_survivors(processes)
    if survivors:
        raise SmokeFailure(f"{len(survivors)} process(es) outlived run.sh: {'; '.join(survivors)}")
    for port in (settings.port, settings.fake_port):
        if port_answers(port):
            raise SmokeFailure(f"port {port} still answers after the stack stopped")


def run(settings: SmokeSettings) -> None:
    """The whole smoke run; SmokeFailure on the first thing that is wrong."""
    shutil.rmtree(SMOKE_DIR, ignore_errors=True)
    SMOKE_DIR.mkdir(parents=True)
    with smoke_redis(settings) as redis_url:
        env = stack_env(settings, redis_url)
        drop_database(StackSettings.from_env(env).database_url)
        with running_stack(settings, env) as stack:
            say(
                f"started scripts/run.sh: API {stack.settings.api}, fake HubSpot "
                f"{stack.settings.fake}, Redis {redis_url}, database {settings.database} "
                "(log: .cache/smoke/run.log)"
            )
            try:
                check_running(settings, stack)
            except SmokeFailure:
                print(stack.tail(), file=sys.stderr)
                raise
            say("running the demo: --count 60 --timeout 60")
            demo_args = ["--api", stack.settings.api, "--fake", stack.settings.fake]
            demo_args += ["--count", "60", "--timeout", "60"]
            if demo.main([*demo_args, "--env-file", str(stack.settings.env_file)]) != 0:
                raise SmokeFailure("the demo did not release every execution at its rate")
            stop_and_check(settings, stack)


def main() -> int:
    """Exit status 0 when the stack ran the demo and stopped without leftovers, else 1."""
    began = time.monotonic()
    try:
        run(SmokeSettings.from_env(os.environ))
    except SmokeFailure as exc:
        say(f"FAILED: {exc}")
        return 1
    took = f"{time.monotonic() - began:.0f}s"
    say(f"OK: the stack ran the demo and stopped without leftovers ({took} in all)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
