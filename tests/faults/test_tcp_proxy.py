"""The fault suite's TCP proxy does what each fault says, against a loopback echo server."""

from __future__ import annotations

import contextlib
import socket
import socketserver
import threading
import time
from collections.abc import Iterator

import pytest

from tests.support.tcp_proxy import TcpProxy


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        with contextlib.suppress(ConnectionError):  # the reset tests reset this side too
            while data := self.request.recv(65536):
                self.request.sendall(data)


@pytest.fixture
def proxy() -> Iterator[TcpProxy]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Echo)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    taps: list[tuple[str, bytes]] = []
    with TcpProxy(server.server_address[1], on_data=lambda d, _, b: taps.append((d, b))) as p:
        p.taps = taps
        yield p
    server.shutdown()
    server.server_close()


def connect(proxy: TcpProxy) -> socket.socket:
    return socket.create_connection(("127.0.0.1", proxy.port), timeout=3)


def echo(sock: socket.socket, data: bytes = b"ping") -> bytes:
    sock.sendall(data)
    return sock.recv(64)


def test_passes_and_taps_both_directions(proxy):
    with connect(proxy) as sock:
        assert echo(sock) == b"ping"
    assert ("up", b"ping") in proxy.taps and ("down", b"ping") in proxy.taps


def test_delay_holds_each_chunk(proxy):
    proxy.delay(0.3, "down")
    with connect(proxy) as sock:
        started = time.monotonic()
        assert echo(sock) == b"ping"
        assert time.monotonic() - started >= 0.3


def test_stall_holds_everything_until_flow(proxy):
    with connect(proxy) as sock:
        proxy.stall()
        sock.sendall(b"held")
        sock.settimeout(0.3)
        with pytest.raises(TimeoutError):
            sock.recv(64)
        proxy.flow()
        sock.settimeout(3)
        assert sock.recv(64) == b"held"


def test_reset_next_response_resets_the_client(proxy):
    with connect(proxy) as sock:
        proxy.reset_next_responses(1)
        sock.sendall(b"lost")
        with pytest.raises(ConnectionError):
            sock.recv(64)
    assert proxy.stats.resets == 1


def test_refuse_resets_open_connections_and_refuses_new_ones_until_accept(proxy):
    sock = connect(proxy)
    assert echo(sock) == b"ping"
    assert proxy.refuse() == 1
    with pytest.raises(ConnectionError):
        echo(sock)
    sock.close()
    with pytest.raises(ConnectionRefusedError):
        connect(proxy)
    proxy.accept()
    with connect(proxy) as again:
        assert echo(again) == b"ping"
