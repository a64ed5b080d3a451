"""scripts/audit.sh (`make audit`, CI): bandit fails on any unexplained finding in the shipped
code; pip-audit (the real one) fails on a known vulnerability in a lock, and, when no
vulnerability service can be reached, says so in one line and passes, never silently. The
vulnerability service is a local OSV stand-in on loopback (pip-audit's --osv-url), or none at all
(an HTTPS proxy on a closed port)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.support.locks import ROOT, lock_path, read_lock

BIN = Path(sys.executable).parent
SKIPPED = "pip-audit: vulnerability service unreachable, audit skipped"
NOSEC = re.compile(r"#\s*nosec\b(?P<rest>.*)$")
# `# nosec B608 # why` or `# nosec B105, B106 # why`: test ids, then a reason.
EXPLAINED = re.compile(r"^ B\d{3}(, ?B\d{3})* # \S.{4,}$")


def run_audit(*locks: str, root: Path = ROOT, **env: str) -> subprocess.CompletedProcess:
    """scripts/audit.sh with this venv's tools, no proxy but what `env` sets."""
    environment = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    environment |= {"BANDIT": str(BIN / "bandit"), "PIP_AUDIT": str(BIN / "pip-audit")}
    return subprocess.run(
        ["bash", root / "scripts" / "audit.sh", *locks],
        env=environment | env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_every_nosec_names_its_test_and_reason() -> None:
    shipped = [*(ROOT / "throttle_app").rglob("*.py"), *(ROOT / "workers").rglob("*.py")]
    seen = 0
    for path in shipped:
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            match = NOSEC.search(line)
            if match:
                seen += 1
                where = f"{path.relative_to(ROOT)}:{number}"
                assert EXPLAINED.match(match.group("rest")), f"{where}: {line.strip()}"
    assert seen, "no nosec found: the pattern no longer matches how they are written"


def test_bandit_fails_on_a_finding(tmp_path: Path) -> None:
    """A copy of the shipped code with one insecure call: the audit fails at bandit, naming it."""
    for name in ("throttle_app", "workers", "scripts"):
        shutil.copytree(ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy2(ROOT / "pyproject.toml", tmp_path)
    (tmp_path / "workers" / "shell_out.py").write_text(
        "import subprocess\n\n\ndef run(command: str) -> None:\n"
        "    subprocess.run(command, shell=True)\n"
    )
    result = run_audit(root=tmp_path)
    assert result.returncode != 0
    assert "B602" in result.stdout and "workers/shell_out.py" in result.stdout
    assert "== pip-audit" not in result.stdout


def test_the_shipped_code_passes_bandit_and_no_service_means_a_clear_skip() -> None:
    """bandit passes as the code stands; with every service unreachable (an HTTPS proxy that
    refuses connections) pip-audit is skipped with the line CI shows, each service's reason
    given, and the audit passes."""
    result = run_audit(str(lock_path("runtime")), HTTPS_PROXY="http://127.0.0.1:9")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "bandit: no findings" in result.stdout
    lines = result.stdout.splitlines()
    assert SKIPPED in lines
    reasons = lines[lines.index(SKIPPED) + 1 :]
    assert [line.split(":")[0].strip() for line in reasons] == ["pypi", "osv"]
    assert all("Unable to connect to proxy" in line for line in reasons), reasons


class FakeOsv:
    """OSV's query API on loopback: answers `vulns` for the packages in `vulnerable`, an empty
    answer for the rest, or `status` for every query when set."""

    def __init__(self) -> None:
        self.vulnerable: dict[str, str] = {}
        self.status = 200
        self.queries: list[dict] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                query = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                fake.queries.append(query)
                body = json.dumps(fake.answer(query)).encode()
                self.send_response(fake.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/v1/query"

    def answer(self, query: dict) -> dict:
        name = query["package"]["name"]
        if name not in self.vulnerable:
            return {}
        affected = {"package": {"name": name, "ecosystem": "PyPI"}}
        affected["ranges"] = [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}]}]
        vuln = {"id": self.vulnerable[name], "summary": "test advisory", "affected": [affected]}
        return {"vulns": [vuln]}


@pytest.fixture
def osv() -> Iterator[FakeOsv]:
    fake = FakeOsv()
    thread = threading.Thread(target=fake.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        fake.server.shutdown()
        fake.server.server_close()
        thread.join(timeout=10)


def audit_with(osv: FakeOsv, tmp_path: Path, *locks: str) -> subprocess.CompletedProcess:
    # A private cache: pip-audit caches answers, and these are not OSV's.
    return run_audit(
        *locks, AUDIT_SERVICES="osv", OSV_URL=osv.url, XDG_CACHE_HOME=str(tmp_path / "cache")
    )


def test_every_locked_package_is_asked_and_a_clean_answer_passes(
    osv: FakeOsv, tmp_path: Path
) -> None:
    result = audit_with(osv, tmp_path, str(lock_path("runtime")), str(lock_path("build")))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"pip-audit: {lock_path('runtime')}: no known vulnerabilities (osv)" in result.stdout
    assert f"pip-audit: {lock_path('build')}: no known vulnerabilities (osv)" in result.stdout
    assert SKIPPED not in result.stdout
    # Every package pip would install here (pip-audit evaluates the markers as pip does).
    asked = {(q["package"]["name"], q["version"]) for q in osv.queries}
    for path in (lock_path("runtime"), lock_path("build")):
        for name, pin in read_lock(path).items():
            assert ((name, pin.version) in asked) == pin.applies(), name


def test_a_known_vulnerability_fails(osv: FakeOsv, tmp_path: Path) -> None:
    osv.vulnerable["gunicorn"] = "GHSA-test-0001"
    result = audit_with(osv, tmp_path, str(lock_path("runtime")))
    assert result.returncode == 1
    assert "Found 1 known vulnerability in 1 package" in result.stderr
    assert "GHSA-test-0001" in result.stderr and "gunicorn" in result.stderr
    assert f"pip-audit: {lock_path('runtime')}: known vulnerabilities (osv" in result.stderr
    assert SKIPPED not in result.stdout


def test_a_failing_service_counts_as_unreachable(osv: FakeOsv, tmp_path: Path) -> None:
    osv.status = 503
    result = audit_with(osv, tmp_path, str(lock_path("runtime")))
    assert result.returncode == 0, result.stdout + result.stderr
    assert SKIPPED in result.stdout
    assert "503 Server Error" in result.stdout


def test_any_other_failure_fails(osv: FakeOsv, tmp_path: Path) -> None:
    """A service that answers, but not as OSV does (here: 400), is no reason to skip."""
    osv.status = 400
    result = audit_with(osv, tmp_path, str(lock_path("runtime")))
    assert result.returncode == 1
    assert SKIPPED not in result.stdout
    assert "failed against osv" in result.stderr
