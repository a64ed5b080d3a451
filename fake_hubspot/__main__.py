"""Run the fake HubSpot in the foreground: ``python -m fake_hubspot --port 8099 ...``.

Prints its base URL on one line, then serves until SIGINT or SIGTERM.
"""

from __future__ import annotations

import argparse
import signal
import threading
from types import FrameType

from fake_hubspot.server import FakeHubSpot


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m fake_hubspot", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8099, help="0 picks a free port")
    parser.add_argument("--client-id", default="test-client-id")
    parser.add_argument("--client-secret", default="test-client-secret")
    parser.add_argument("--portal-id", type=int, default=50467010, help="default portal")
    parser.add_argument("--expires-in", type=int, default=1800, help="access-token lifetime, s")
    parser.add_argument("--rate-limit", type=int, default=110, help="calls per portal window")
    parser.add_argument("--rate-window", type=float, default=10.0, help="window, seconds")
    parser.add_argument("--rotate-refresh-tokens", action="store_true")
    parser.add_argument("--verbose", action="store_true", help="log every request to stderr")
    return parser


def main(argv: list[str] | None = None) -> None:
    """Parse arguments, serve, stop cleanly on SIGINT/SIGTERM."""
    args = _parser().parse_args(argv)
    done = threading.Event()

    def _stop(signum: int, frame: FrameType | None) -> None:
        done.set()

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    fake = FakeHubSpot(
        args.client_id,
        args.client_secret,
        args.host,
        args.port,
        verbose=args.verbose,
        default_portal_id=args.portal_id,
        expires_in=args.expires_in,
        rate_limit=args.rate_limit,
        rate_window=args.rate_window,
        rotate_refresh_tokens=args.rotate_refresh_tokens,
    )
    with fake:
        print(fake.base_url, flush=True)
        done.wait()


if __name__ == "__main__":
    main()
