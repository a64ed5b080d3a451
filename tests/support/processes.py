"""Start the project's real processes (through scripts/entrypoint.sh) for end-to-end tests.

free_port is devtools' (imported here for the tests that use it with the helpers below)."""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import redis
import requests

from devtools.ports import free_port
from devtools.redis_server import TlsFiles
from devtools.redis_server import private_redis as devtools_private_redis
from fake_hubspot import FakeHubSpot
from tests.conftest import TEST_REDIS_URL, service_env
from throttle_app.config import Settings

ROOT = Path(__file__).resolve().parents[2]


def process_env(env: dict[str, str]) -> dict[str, str]:
    """The environment for a child process: the test settings plus this interpreter's venv."""
    bin_dir = str(Path(sys.executable).parent)
    return {
        **os.environ,
        **env,
        "PATH": f"{bin_dir}:{os.environ.get('PATH', '')}",
        "PYTHONPATH": str(ROOT),
    }


def start_role(role: str, env: dict[str, str], *args: str, log_path: Path | None = None):
    """Run `scripts/entrypoint.sh ROLE ARGS` in its own process group (its log is appended to,
    so a role restarted by a test keeps the lines of its earlier runs)."""
    out = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115
    return subprocess.Popen(
        ["bash", str(ROOT / "scripts" / "entrypoint.sh"), role, *args],
        env=process_env(env),
        cwd=ROOT,
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def wait_for_http(url: str, timeout: float = 30.0, process: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode} before {url} answered")
        try:
            if requests.get(url, timeout=1).status_code < 500:
                return
        except requests.RequestException:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer within {timeout}s")


def kill_group(process: subprocess.Popen, sig: int = signal.SIGKILL, timeout: float = 20) -> None:
    """Send `sig` to the process and all its children (its process group), then reap it."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, sig)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(5)


class PrivateRedis:
    """A Redis server of its own on a free loopback port, without persistence, that a test may
    FLUSHALL, shut down and start again on the same port (a real restart: every key is lost)."""

    def __init__(self, tmp_path: Path, *options: str) -> None:
        server = shutil.which("redis-server")
        assert server, "redis-server is missing: bash scripts/services.sh installs it"
        self._command = [server, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        self._options = options
        self.tmp_path = tmp_path
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen | None = None
        self.restarts = 0

    def start(self, timeout: float = 10.0) -> None:
        """Start the server on its port and wait until it answers PING."""
        self.process = subprocess.Popen(
            [*self._command, "--port", str(self.port), *self._options],
            cwd=self.tmp_path,
            stdout=open(self.tmp_path / "redis.log", "ab"),  # noqa: SIM115 (closed with the process)
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while True:
            try:
                redis.Redis.from_url(self.url, socket_timeout=1).ping()
                return
            except redis.ConnectionError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise
                time.sleep(0.05)

    def stop(self) -> None:
        """Stop the server without saving (its data is gone) and reap it."""
        if self.process is None:
            return
        with contextlib.suppress(redis.RedisError):
            redis.Redis.from_url(self.url, socket_timeout=2).shutdown(nosave=True)
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)
        self.process = None

    def restart(self, down_seconds: float = 0.0) -> None:
        """SHUTDOWN NOSAVE, stay down `down_seconds`, start again on the same port."""
        self.stop()
        time.sleep(down_seconds)
        self.start()
        self.restarts += 1


@contextlib.contextmanager
def private_redis_server(tmp_path: Path, *options: str) -> Iterator[PrivateRedis]:
    """A started PrivateRedis, stopped (and reaped) when the block ends, even on failure."""
    server = PrivateRedis(tmp_path, *options)
    try:
        server.start()
        yield server
    finally:
        server.stop()


@contextlib.contextmanager
def private_redis(
    tmp_path: Path, *options: str, password: str | None = None, tls: bool = False
) -> Iterator[str]:
    """devtools' private redis-server; `tls=True` makes it TLS-only with a certificate for
    127.0.0.1 from a throwaway CA (tests/support/tls.py)."""
    files = None
    if tls:
        from tests.support.tls import make_server_certificate

        made = make_server_certificate(tmp_path / "redis-tls")
        files = TlsFiles(cert=made.cert, key=made.key, ca=made.ca)
    with devtools_private_redis(tmp_path, *options, password=password, tls=files) as url:
        yield url


class Stack:
    """The service's processes on loopback ports, against the test database and Redis."""

    def __init__(
        self,
        fake: FakeHubSpot,
        tmp_path,
        workers: int,
        redis_url: str | None = None,
        **settings: str,
    ) -> None:
        """`settings`: environment variables that replace the stack's test values (e.g. the
        production defaults a test wants to prove: THROTTLE_LEASE_SECONDS=...)."""
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.redis_url = redis_url or TEST_REDIS_URL
        self.env = service_env(
            REDIS_URL=self.redis_url,
            PORT=str(self.port),
            PUBLIC_BASE_URL=self.base,
            HUBSPOT_API_BASE=fake.base_url,
            HUBSPOT_APP_BASE=fake.base_url,
            # a short lease (a killed worker's rows return fast) must still outlast one call:
            # bucket wait 2 + connect 1 + read 3 + 1 s margin (config.py rejects less)
            THROTTLE_LEASE_SECONDS="8",
            THROTTLE_CLEANER_INTERVAL_SECONDS="2",
            THROTTLE_HTTP_CONNECT_TIMEOUT_SECONDS="1",
            THROTTLE_HTTP_READ_TIMEOUT_SECONDS="3",
            THROTTLE_WEB_WORKERS="2",
            THROTTLE_LOG_LEVEL=os.environ.get("E2E_LOG_LEVEL", "WARNING"),
        )
        self.env.update(settings)
        self.tmp_path = tmp_path
        self.web = self.scheduler = None
        self.workers: list[subprocess.Popen] = []
        try:
            self.web = start_role("web", self.env, log_path=tmp_path / "web.log")
            self.workers = [self.start_worker(n) for n in range(workers)]
            self.scheduler = start_role("scheduler", self.env, log_path=tmp_path / "scheduler.log")
            wait_for_http(f"{self.base}/api/health", process=self.web)
        except BaseException:
            self.stop()  # a stack that did not start leaves no process behind
            raise

    def start_worker(self, n: int):
        return start_role("worker", self.env, log_path=self.tmp_path / f"worker-{n}.log")

    def stop(self) -> None:
        for process in [self.web, self.scheduler, *self.workers]:
            if process is not None:
                kill_group(process, signal.SIGTERM)

    @property
    def settings(self) -> Settings:
        """The settings every process of this stack runs with."""
        return Settings.from_env(self.env)

    def processes(self) -> dict[str, subprocess.Popen]:
        """Each role's current process: web, scheduler, worker-0, worker-1, ..."""
        found = {"web": self.web, "scheduler": self.scheduler}
        found |= {f"worker-{n}": process for n, process in enumerate(self.workers)}
        return {role: process for role, process in found.items() if process is not None}

    def kill(self, role: str, sig: int = signal.SIGKILL) -> None:
        """Send `sig` to the role's whole process group (a pod dying) and reap it."""
        kill_group(self.processes()[role], sig)

    def start(self, role: str) -> subprocess.Popen:
        """Start the role again (what a supervisor does after it died)."""
        if role == "web":
            self.web = start_role("web", self.env, log_path=self.tmp_path / "web.log")
            return self.web
        if role == "scheduler":
            self.scheduler = start_role(
                "scheduler", self.env, log_path=self.tmp_path / "scheduler.log"
            )
            return self.scheduler
        n = int(role.removeprefix("worker-"))
        self.workers[n] = self.start_worker(n)
        return self.workers[n]

    def exited(self) -> list[str]:
        """The roles whose process has exited (none should, unless a test killed it)."""
        return [role for role, process in self.processes().items() if process.poll() is not None]


def group_rss_kb(pgid: int) -> dict[int, tuple[str, int]]:
    """Resident memory of every live process in process group `pgid`: pid -> (name, kB); a
    process that has exited but is not reaped yet (a zombie) is left out."""
    found: dict[int, tuple[str, int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            # pid (comm) state ppid pgrp ...: comm may hold spaces and parentheses
            fields = stat[stat.rindex(")") + 2 :].split()
            if int(fields[2]) != pgid:
                continue
            status = (entry / "status").read_text()
            rss = next(
                (int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")),
                None,
            )
            if rss is None:
                continue  # a zombie: it has exited and holds no memory
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, ValueError):
            continue  # exited while being read
        found[int(entry.name)] = (
            command.strip()[:80] or stat[stat.index("(") + 1 : stat.rindex(")")],
            rss,
        )
    return found


def postgres_bin_dir() -> Path | None:
    """The newest installed PostgreSQL server's bin directory (Debian's layout), if any."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: p.split("/")[4])
    return Path(found[-1]).parent if found else None


class PrivatePostgres:
    """A PostgreSQL cluster of its own (initdb in a temporary directory, trust auth on a free
    loopback port), which a test may crash and restart: the shared server is never touched.

    Run as root, the cluster belongs to the `postgres` user (the server refuses to run as root).
    """

    def __init__(self, bin_dir: Path) -> None:
        self.bin_dir = bin_dir
        self.port = free_port()
        self.directory = Path(tempfile.mkdtemp(prefix="throttle-pg-"))
        self.data = self.directory / "data"
        self.log = self.directory / "server.log"
        self._as_owner: list[str] = []
        if os.geteuid() == 0:
            self._as_owner = ["runuser", "-u", "postgres", "--"]
            shutil.chown(self.directory, "postgres", "postgres")

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def _run(self, tool: str, *args: str, timeout: float = 60) -> None:
        subprocess.run(
            [*self._as_owner, str(self.bin_dir / tool), *args],
            check=True,
            timeout=timeout,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

    def init(self) -> None:
        """initdb (trust auth, superuser `postgres`), without fsync for the init itself."""
        self._run(
            "initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "--no-sync",
            "-E", "UTF8", "--locale=C",
        )  # fmt: skip

    def start(self) -> None:
        """Start and wait until it accepts connections (crash recovery included)."""
        options = f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1"
        self._run(
            "pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "-t", "60",
            "start",
        )  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        """`mode` immediate is a crash: no checkpoint, recovery from the WAL on the next start."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def remove(self) -> None:
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            self.stop("immediate")
        shutil.rmtree(self.directory, ignore_errors=True)


@contextlib.contextmanager
def private_postgres() -> Iterator[PrivatePostgres]:
    """A started PrivatePostgres, stopped and deleted when the block ends, even on failure.
    Raises FileNotFoundError when no PostgreSQL server binaries are installed."""
    bin_dir = postgres_bin_dir()
    if bin_dir is None:
        raise FileNotFoundError("no /usr/lib/postgresql/*/bin/pg_ctl")
    server = PrivatePostgres(bin_dir)
    try:
        server.init()
        server.start()
        yield server
    finally:
        server.remove()


class Periodic:
    """Runs `tick()` on a daemon thread, at once and then every `every` seconds, while its
    with-block runs; the thread is stopped and joined when the block ends, even on failure."""

    def __init__(self, every: float, name: str) -> None:
        self.every = every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def tick(self) -> None:
        raise NotImplementedError

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        while True:
            self.tick()
            if self._stop.wait(self.every):
                return


class Supervisor(Periodic):
    """Restarts every role of a Stack whose process exited, `restart_delay` seconds after it
    was seen dead, as Kubernetes restarts a container; kills go through it too.

    `restarts` lists (time.time(), role, exit code) for each restart, so a test can tell the
    processes it killed from those that died by themselves."""

    def __init__(self, stack: Stack, restart_delay: float = 1.0, poll: float = 0.2) -> None:
        super().__init__(poll, "supervisor")
        self.stack = stack
        self.restart_delay = restart_delay
        self.restarts: list[tuple[float, str, int | None]] = []
        self._lock = threading.Lock()
        self._dead_since: dict[str, float] = {}

    def kill(self, role: str, sig: int = signal.SIGKILL) -> None:
        """Kill the role's process group; the supervisor starts it again."""
        with self._lock:
            self.stack.kill(role, sig)

    def tick(self) -> None:
        with self._lock:
            for role in self.stack.exited():
                since = self._dead_since.setdefault(role, time.monotonic())
                if time.monotonic() - since < self.restart_delay:
                    continue
                code = self.stack.processes()[role].returncode
                self.stack.start(role)
                self.restarts.append((time.time(), role, code))
                del self._dead_since[role]
