"""Loopback ports for the dev tools: a free one to listen on, and whether one answers."""

from __future__ import annotations

import socket


def free_port() -> int:
    """A TCP port nothing listens on at this moment on 127.0.0.1 (the OS picks it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_answers(port: int) -> bool:
    """True when something accepts connections on 127.0.0.1:`port` (within a second)."""
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0
