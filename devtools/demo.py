"""Show Throttle working, against the local stack that `bash scripts/run.sh` runs.

1. Installs the app in a sandbox portal through the real OAuth flow: GET /api/oauth/authorize,
   the fake HubSpot's consent page (it approves at once), back to /api/oauth/callback.
2. Sends signed execution requests (signature v2, as HubSpot signs them) to two queues with
   different rates, 20 per second and 5 per second, split so both take about as long.
3. Shows, per queue, the executions released back to HubSpot (read from the fake's
   /_fake/completions) against the number the rate allows so far, until all are released.

Exit status: 0 when every execution was released exactly at its rate; 1 on a timeout or when
something went wrong (the stack not running, the install failing, a request refused, a
window that released more than its rate).

Settings come from the same places as run.sh's: the API on http://127.0.0.1:$PORT (8000),
the fake on http://127.0.0.1:$FAKE_PORT (8099), the HubSpot client secret from
$DEV_ENV_FILE (.cache/dev.env, written by run.sh), else from $HUBSPOT_CLIENT_SECRET.
"""

from __future__ import annotations

import argparse
import bisect
import hashlib
import json
import os
import secrets
import sys
import threading
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import requests

from devtools.env_file import env_file_path, read_env_file

ACTION_PATH = "/api/hubspot/action"
HTTP_TIMEOUT = 10.0
POLL_SECONDS = 0.25


class DemoError(Exception):
    """The demo cannot go on; the message says why (one line)."""


@dataclass(frozen=True)
class QueueSpec:
    """One demo queue: a workflow whose Throttle action releases `per` every `seconds`."""

    label: str
    workflow_id: int
    per: int
    seconds: int
    count: int

    @property
    def rate_text(self) -> str:
        return f"{self.per} per {self.seconds}s"

    def allowed_by(self, elapsed: float) -> int:
        """How many the rate allows `elapsed` seconds after the first admission: a full
        window at once, then one more window every `seconds` (burst mode)."""
        windows = int(max(0.0, elapsed) // self.seconds) + 1
        return min(self.count, windows * self.per)


# --- settings ------------------------------------------------------------------------------------


def client_secret(explicit: str | None, env_file: Path) -> str:
    if explicit:
        return explicit
    if env_file.is_file():
        secret = read_env_file(env_file).get("HUBSPOT_CLIENT_SECRET")
        if secret:
            return secret
    secret = os.environ.get("HUBSPOT_CLIENT_SECRET")
    if secret:
        return secret
    raise DemoError(
        f"no HubSpot client secret: {env_file} is missing (start the stack with "
        "`bash scripts/run.sh`, which writes it) and HUBSPOT_CLIENT_SECRET is not set"
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    port = os.environ.get("PORT", "8000")
    fake_port = os.environ.get("FAKE_PORT", "8099")
    parser = argparse.ArgumentParser(
        prog="scripts/demo.py",
        description="Install a sandbox portal, send signed webhooks to two queues with "
        "different rates, and watch them being released at those rates.",
    )
    parser.add_argument("--api", default=f"http://127.0.0.1:{port}", help="Throttle's base URL")
    parser.add_argument(
        "--fake", default=f"http://127.0.0.1:{fake_port}", help="the fake HubSpot's base URL"
    )
    parser.add_argument(
        "--public-base-url",
        default=None,
        help="the URL the service signs against (its PUBLIC_BASE_URL; default: --api)",
    )
    parser.add_argument(
        "--env-file",
        type=Path,
        default=env_file_path(os.environ),
        help="run.sh's dev secrets (for the HubSpot client secret)",
    )
    parser.add_argument("--client-secret", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--portal-id", type=int, default=50467010, help="sandbox portal")
    parser.add_argument(
        "--count", type=int, default=300, help="webhooks in all, over both queues (300)"
    )
    parser.add_argument(
        "--timeout", type=float, default=120.0, help="seconds to wait for the releases (120)"
    )
    parser.add_argument("--quiet", action="store_true", help="print only the outcome")
    args = parser.parse_args(argv)
    if args.count < 2:
        parser.error("--count must be at least 2 (one per queue)")
    if args.timeout <= 0:
        parser.error("--timeout must be positive")
    args.api = args.api.rstrip("/")
    args.fake = args.fake.rstrip("/")
    args.public_base_url = (args.public_base_url or args.api).rstrip("/")
    return args


def plan(count: int, run_seed: int) -> tuple[QueueSpec, QueueSpec]:
    """Two queues of this run (fresh workflow ids, so earlier runs' backlogs don't interfere),
    with the webhooks split by rate so both take about as long."""
    fast_per, slow_per = 20, 5
    fast = max(1, min(count - 1, round(count * fast_per / (fast_per + slow_per))))
    workflow = 900_000_000 + (run_seed % 50_000_000) * 2
    return (
        QueueSpec("fast", workflow, fast_per, 1, fast),
        QueueSpec("slow", workflow + 1, slow_per, 1, count - fast),
    )


# --- HubSpot requests ----------------------------------------------------------------------------


def execution_payload(
    callback_id: str, portal_id: int, spec: QueueSpec, object_id: int
) -> dict[str, Any]:
    """An execution request as HubSpot sends it for our custom action."""
    return {
        "callbackId": callback_id,
        "origin": {
            "portalId": portal_id,
            "actionDefinitionId": 259551814,
            "actionDefinitionVersion": 1,
            "actionExecutionIndexIdentifier": {
                "enrollmentId": 2384423471376 + object_id,
                "actionExecutionIndex": 0,
            },
        },
        "context": {"workflowId": spec.workflow_id, "actionId": 1, "source": "WORKFLOWS"},
        "object": {"objectId": 153847279758 + object_id, "objectType": "CONTACT"},
        "inputFields": {
            "maxThroughPut": str(spec.per),
            "time": str(spec.seconds),
            "period": "seconds",
        },
    }


def v2_headers(secret: str, url: str, body: bytes) -> dict[str, str]:
    """HubSpot's v2 signature: SHA-256 hex of secret + method + URI + body."""
    signature = hashlib.sha256(secret.encode() + b"POST" + url.encode() + body).hexdigest()
    return {
        "Content-Type": "application/json",
        "X-HubSpot-Signature": signature,
        "X-HubSpot-Signature-Version": "v2",
    }


# --- steps ---------------------------------------------------------------------------------------


def check_stack(args: argparse.Namespace) -> None:
    for name, url in (
        ("Throttle", f"{args.api}/api/health"),
        ("fake HubSpot", f"{args.fake}/_fake/stats"),
    ):
        try:
            answer = requests.get(url, timeout=5)
        except requests.RequestException as exc:
            raise DemoError(
                f"{name} does not answer at {url} ({type(exc).__name__}); "
                "is the local stack running? Start it with `bash scripts/run.sh`"
            ) from None
        if answer.status_code != 200:
            raise DemoError(f"{name} is not ready: {url} answered {answer.status_code}")


def _with_param(url: str, name: str, value: str) -> str:
    parts = urlsplit(url)
    query = [*parse_qsl(parts.query, keep_blank_values=True), (name, value)]
    return urlunsplit(parts._replace(query=urlencode(query)))


def install(args: argparse.Namespace) -> dict[str, Any]:
    """The admin's browser: authorize, consent at the fake, callback. Returns the callback JSON."""
    browser = requests.Session()
    start = browser.get(
        f"{args.api}/api/oauth/authorize", allow_redirects=False, timeout=HTTP_TIMEOUT
    )
    if start.status_code != 302:
        raise DemoError(f"/api/oauth/authorize answered {start.status_code}, not a redirect")
    consent_url = _with_param(start.headers["Location"], "portal_id", str(args.portal_id))
    if not consent_url.startswith(args.fake + "/"):
        raise DemoError(
            f"the install redirects to {urlsplit(consent_url).netloc}, not to the fake HubSpot "
            f"at {args.fake} (is HUBSPOT_APP_BASE pointed at the fake?)"
        )
    consent = browser.get(consent_url, allow_redirects=False, timeout=HTTP_TIMEOUT)
    if consent.status_code != 302:
        raise DemoError(f"the fake's consent page answered {consent.status_code}")
    callback_url = consent.headers["Location"]
    done = browser.get(callback_url, headers={"Accept": "application/json"}, timeout=HTTP_TIMEOUT)
    try:
        answer = done.json()
    except ValueError:
        answer = {}
    if done.status_code != 200 or answer.get("status") != "connected":
        reason = answer.get("error") or done.text[:200]
        raise DemoError(f"the install failed ({done.status_code}): {reason}")
    if answer.get("portal_id") != args.portal_id:
        raise DemoError(f"installed portal {answer.get('portal_id')}, expected {args.portal_id}")
    return answer


def send_webhooks(
    args: argparse.Namespace, secret: str, run_id: str, specs: Iterable[QueueSpec]
) -> float:
    """POST every execution request (interleaved over the queues); all must answer BLOCK.
    Returns when (time.monotonic) the first one was admitted: the queues' first window."""
    url = f"{args.api}{ACTION_PATH}"
    signed_url = f"{args.public_base_url}{ACTION_PATH}"
    bodies: list[tuple[str, bytes]] = []
    per_queue = [
        [(f"demo-{run_id}-{spec.label}-{n}", spec) for n in range(spec.count)] for spec in specs
    ]
    longest = max(len(items) for items in per_queue)
    for n in range(longest):
        for items in per_queue:
            if n < len(items):
                callback_id, spec = items[n]
                payload = execution_payload(callback_id, args.portal_id, spec, len(bodies))
                bodies.append((callback_id, json.dumps(payload).encode()))
    local = threading.local()
    admitted: list[float] = []

    def send(item: tuple[str, bytes]) -> str | None:
        callback_id, body = item
        session = getattr(local, "session", None)
        if session is None:
            session = local.session = requests.Session()
        try:
            answer = session.post(
                url, data=body, headers=v2_headers(secret, signed_url, body), timeout=HTTP_TIMEOUT
            )
        except requests.RequestException as exc:
            return f"{callback_id}: {type(exc).__name__}"
        if answer.status_code != 200:
            return f"{callback_id}: {answer.status_code} {answer.text[:200]}"
        admitted.append(time.monotonic())
        state = (answer.json().get("outputFields") or {}).get("hs_execution_state")
        return None if state == "BLOCK" else f"{callback_id}: answered {state}, not BLOCK"

    with ThreadPoolExecutor(max_workers=16) as pool:
        problems = [p for p in pool.map(send, bodies) if p]
    if problems:
        raise DemoError(f"{len(problems)} of {len(bodies)} webhooks refused, e.g. {problems[0]}")
    return min(admitted)


def completions(args: argparse.Namespace, prefix: str) -> list[dict[str, Any]]:
    answer = requests.get(
        f"{args.fake}/_fake/completions",
        params={"portal_id": args.portal_id},
        timeout=HTTP_TIMEOUT,
    )
    answer.raise_for_status()
    return [c for c in answer.json() if str(c.get("callback_id", "")).startswith(prefix)]


# --- progress ------------------------------------------------------------------------------------


class Progress:
    """Bars redrawn in place on a terminal; a line every few seconds otherwise; nothing quiet."""

    def __init__(self, specs: tuple[QueueSpec, ...], out: TextIO, quiet: bool) -> None:
        self.specs = specs
        self.out = out
        self.quiet = quiet
        self.tty = out.isatty()
        self.drawn = False
        self.last_line = 0.0

    def show(self, elapsed: float, released: dict[str, int], final: bool = False) -> None:
        if self.quiet:
            return
        if self.tty:
            if self.drawn:
                self.out.write(f"\x1b[{len(self.specs)}F")
            for spec in self.specs:
                self.out.write("\x1b[2K" + self._bar(spec, elapsed, released[spec.label]) + "\n")
            self.out.flush()
            self.drawn = True
        elif final or elapsed - self.last_line >= 2.0:
            self.last_line = elapsed
            parts = [
                f"{spec.label} {released[spec.label]}/{spec.count} "
                f"(rate allows {spec.allowed_by(elapsed)})"
                for spec in self.specs
            ]
            print(f"  {elapsed:5.1f}s  " + "   ".join(parts), file=self.out, flush=True)

    @staticmethod
    def _bar(spec: QueueSpec, elapsed: float, released: int, width: int = 32) -> str:
        done = int(width * released / spec.count)
        allowed = int(width * spec.allowed_by(elapsed) / spec.count)
        cells = "".join("#" if i < done else ("-" if i < allowed else ".") for i in range(width))
        return (
            f"  {spec.label:<5} {spec.rate_text:<12} [{cells}] {released:>5}/{spec.count:<5} "
            f"released, rate allows {spec.allowed_by(elapsed):>5}  {elapsed:5.1f}s"
        )


def max_in_window(times: list[float], window: float) -> int:
    """The most releases inside any window of `window` seconds."""
    times = sorted(times)
    return max((bisect.bisect_left(times, t + window) - i for i, t in enumerate(times)), default=0)


def released_by_queue(
    records: list[dict[str, Any]], run_prefix: str, specs: tuple[QueueSpec, ...]
) -> dict[str, list[dict[str, Any]]]:
    mine: dict[str, list[dict[str, Any]]] = {spec.label: [] for spec in specs}
    for record in records:
        label = str(record["callback_id"])[len(run_prefix) :].split("-", 1)[0]
        if label in mine:
            mine[label].append(record)
    return mine


def watch(
    args: argparse.Namespace,
    run_prefix: str,
    specs: tuple[QueueSpec, ...],
    first_admitted: float,
    deadline: float,
    progress: Progress,
) -> tuple[dict[str, list[dict[str, Any]]], float, bool]:
    """Poll the fake until every execution is released or the deadline (monotonic) passes.
    Returns the releases by queue, seconds since the first admission, and whether all came."""
    while True:
        records = released_by_queue(completions(args, run_prefix), run_prefix, specs)
        counts = {label: len({r["callback_id"] for r in rs}) for label, rs in records.items()}
        now = time.monotonic()
        done = all(counts[spec.label] >= spec.count for spec in specs)
        progress.show(now - first_admitted, counts, final=done or now >= deadline)
        if done or now >= deadline:
            return records, now - first_admitted, done
        time.sleep(POLL_SECONDS)


def report(
    specs: tuple[QueueSpec, ...], records: dict[str, list[dict[str, Any]]], out: TextIO
) -> bool:
    """One line per queue; False when a window released more than the rate allows."""
    ok = True
    for spec in specs:
        mine = records[spec.label]
        first_seen: dict[str, float] = {}
        for record in mine:
            first_seen.setdefault(record["callback_id"], record["time"])
        times = sorted(first_seen.values())
        duplicates = len(mine) - len(first_seen)
        busiest = max_in_window([r["time"] for r in mine], spec.seconds)
        line = f"  {spec.label}: {len(first_seen)}/{spec.count} released"
        if len(times) >= 3 * spec.per:  # a rate over fewer windows says little
            sustained = (len(times) - spec.per) / max(times[-1] - times[0], 1e-9)
            line += f", sustained {sustained:.1f}/s (rate {spec.per / spec.seconds:g}/s)"
        line += f", busiest {spec.seconds}s window {busiest} (limit {spec.per})"
        if duplicates:
            line += f", {duplicates} completed twice"
        if busiest > spec.per:
            line += "  <-- RATE EXCEEDED"
            ok = False
        print(line, file=out)
    return ok


def run(args: argparse.Namespace, out: TextIO) -> int:
    def say(message: str) -> None:
        if not args.quiet:
            print(message, file=out, flush=True)

    secret = client_secret(args.client_secret, args.env_file)
    check_stack(args)
    installed = install(args)
    verb = "reconnected" if installed.get("reconnected") else "connected"
    say(f"demo: portal {args.portal_id} {verb} through the OAuth flow")
    run_seed = secrets.randbelow(10**9)
    run_id = f"{run_seed:09d}"
    specs = plan(args.count, run_seed)
    say(
        f"demo: sending {args.count} signed webhooks: "
        + ", ".join(f"{s.count} to '{s.label}' ({s.rate_text})" for s in specs)
    )
    started = time.monotonic()
    first_admitted = send_webhooks(args, secret, run_id, specs)
    say(f"demo: all {args.count} answered BLOCK in {time.monotonic() - started:.1f}s; releasing:")
    progress = Progress(specs, out, args.quiet)
    deadline = started + args.timeout
    records, elapsed, done = watch(
        args, f"demo-{run_id}-", specs, first_admitted, deadline, progress
    )
    rates_ok = report(specs, records, out)
    if not done:
        print(f"demo: FAILED: not everything was released within {args.timeout:g}s", file=out)
        return 1
    if not rates_ok:
        print("demo: FAILED: a queue released more than its rate allows", file=out)
        return 1
    print(f"demo: OK: all {args.count} released in {elapsed:.1f}s at their rates", file=out)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return run(args, sys.stdout)
    except DemoError as exc:
        print(f"demo: FAILED: {exc}", file=sys.stderr)
    except requests.RequestException as exc:
        print(f"demo: FAILED: HTTP error: {type(exc).__name__}: {exc}", file=sys.stderr)
    except KeyboardInterrupt:
        print("\ndemo: interrupted", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
