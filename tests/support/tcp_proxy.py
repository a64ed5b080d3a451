"""A loopback TCP proxy for fault tests, controlled from the test while traffic flows.

Put it between the service and PostgreSQL, Redis or the fake HubSpot (point the service's URL at
``proxy.port``) and break the path the way networks and restarts break it:

- ``delay(seconds, direction)``: every chunk waits before it is forwarded (a slow link or a
  slow server); order within a direction is kept.
- ``stall()`` / ``flow()``: nothing is forwarded while stalled; connections stay open and the
  data waits (a hung server or a black-holed path). A client that gives up and closes its side
  drops what was waiting for it, as a dead path would.
- ``reset_all()``: every open connection is reset (RST, through ``SO_LINGER`` 0) on both sides.
- ``reset_next_requests(n)`` / ``reset_next_responses(n)``: the next ``n`` chunks sent by a
  client (which then never reach the server) or by the server (which then acted, but its answer
  never arrives) reset their connection instead of being forwarded.
- ``refuse()`` / ``accept()``: close the listening socket, so connecting is refused, and reset
  every open connection (what a client sees of a server restart); then listen again on the same
  port.

``on_data(direction, link_id, data)`` (optional) sees every chunk as it arrives at the proxy,
before any fault applies, with ``direction`` "up" (client to server) or "down": a wire log of
what was sent, whether or not it got through.

One asyncio loop on a daemon thread runs every connection; the control methods run on that loop
and return once applied, so a test's next line already sees the new behaviour.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import socket
import struct
import threading
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

CHUNK_BYTES = 65536
CONTROL_TIMEOUT_SECONDS = 10.0
UP, DOWN = "up", "down"
_RST = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends RST, not FIN

DataTap = Callable[[str, int, bytes], None]


@dataclass
class ProxyStats:
    """What the proxy saw: connections accepted, refused upstream, and reset by a fault (all
    resets; and those of `reset_next_requests` and `reset_next_responses` by direction)."""

    accepted: int = 0
    upstream_failures: int = 0
    resets: int = 0
    reset_requests: int = 0
    reset_responses: int = 0
    bytes_up: int = 0
    bytes_down: int = 0


@dataclass(eq=False)
class _Link:
    id: int
    client: asyncio.StreamWriter
    server: asyncio.StreamWriter | None = None
    tasks: list[asyncio.Task] = field(default_factory=list)

    def reset(self) -> None:
        """RST both sides now; the pumps end on their next read or write."""
        for writer in (self.client, self.server):
            if writer is None or writer.transport.is_closing():
                continue
            sock = writer.transport.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RST)
            writer.transport.abort()


class TcpProxy:
    """Forwards ``127.0.0.1:port`` to ``upstream_host:upstream_port`` with injectable faults."""

    def __init__(
        self,
        upstream_port: int,
        upstream_host: str = "127.0.0.1",
        port: int = 0,
        on_data: DataTap | None = None,
        connect_timeout: float = 5.0,
    ) -> None:
        self.upstream = (upstream_host, upstream_port)
        self._requested_port = port
        self._on_data = on_data
        self._connect_timeout = connect_timeout
        self.stats = ProxyStats()
        self._ids = itertools.count(1)
        self._links: set[_Link] = set()
        self._delay = {UP: 0.0, DOWN: 0.0}
        self._reset_next = {UP: 0, DOWN: 0}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self._flowing: asyncio.Event | None = None
        self._port: int | None = None

    # Lifecycle

    def start(self) -> TcpProxy:
        """Listen on a background thread; returns self once the port is bound."""
        if self._loop is not None:
            return self
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._thread = threading.Thread(
            target=loop.run_forever, name=f"tcp-proxy-{self.upstream[1]}", daemon=True
        )
        self._thread.start()
        self._call(self._setup())
        return self

    def stop(self) -> None:
        """Reset every connection, stop listening and end the loop's thread."""
        loop = self._loop
        if loop is None:
            return
        with contextlib.suppress(Exception):
            self._call(self._shutdown())
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(5)
        loop.close()
        self._loop = None
        self._thread = None

    def __enter__(self) -> TcpProxy:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._port is not None, "start() the proxy first"
        return self._port

    @property
    def open_connections(self) -> int:
        return len(self._links)

    # Faults

    def delay(self, seconds: float, direction: str = "both") -> None:
        """Hold every chunk `seconds` before forwarding it (`direction`: up, down or both)."""
        for side in (UP, DOWN) if direction == "both" else (direction,):
            self._delay[side] = seconds

    def stall(self) -> None:
        """Forward nothing until `flow()`; connections stay open, their data waits."""
        self._call(self._set_flowing(False))

    def flow(self) -> None:
        """Forward again (undoes `stall`)."""
        self._call(self._set_flowing(True))

    def reset_next_requests(self, count: int = 1) -> None:
        """Reset instead of forwarding the next `count` chunks a client sends."""
        self._reset_next[UP] += count

    def reset_next_responses(self, count: int = 1) -> None:
        """Reset instead of forwarding the next `count` chunks the server sends."""
        self._reset_next[DOWN] += count

    def reset_all(self) -> int:
        """RST every open connection now; returns how many there were."""
        return self._call(self._reset_all())

    def refuse(self) -> int:
        """Stop listening (connecting is refused) and RST every open connection."""
        return self._call(self._refuse())

    def accept(self) -> None:
        """Listen again, on the same port."""
        self._call(self._listen())

    def heal(self) -> None:
        """Back to passing everything through: no delay, no pending resets, flowing."""
        self._delay = {UP: 0.0, DOWN: 0.0}
        self._reset_next = {UP: 0, DOWN: 0}
        self.flow()

    # Loop side

    def _call(self, coro: Coroutine[Any, Any, Any]) -> Any:
        assert self._loop is not None, "start() the proxy first"
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(CONTROL_TIMEOUT_SECONDS)

    async def _setup(self) -> None:
        self._flowing = asyncio.Event()
        self._flowing.set()
        await self._listen()

    async def _listen(self) -> None:
        if self._server is not None:
            return
        self._server = await asyncio.start_server(
            self._handle,
            "127.0.0.1",
            self._port or self._requested_port,
            reuse_address=True,
            backlog=256,
        )
        self._port = self._server.sockets[0].getsockname()[1]

    async def _refuse(self) -> int:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        return await self._reset_all()

    async def _reset_all(self) -> int:
        links = list(self._links)
        for link in links:
            link.reset()
        self.stats.resets += len(links)
        return len(links)

    async def _set_flowing(self, flowing: bool) -> None:
        assert self._flowing is not None
        if flowing:
            self._flowing.set()
        else:
            self._flowing.clear()

    async def _shutdown(self) -> None:
        await self._refuse()
        tasks = [task for link in self._links for task in link.tasks]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        link = _Link(next(self._ids), writer)
        self.stats.accepted += 1
        self._links.add(link)
        try:
            try:
                up_reader, link.server = await asyncio.wait_for(
                    asyncio.open_connection(*self.upstream), self._connect_timeout
                )
            except (OSError, TimeoutError):
                self.stats.upstream_failures += 1
                link.reset()  # the server is not there: the client sees its connection reset
                return
            link.tasks = [
                asyncio.create_task(self._pump(link, reader, link.server, UP)),
                asyncio.create_task(self._pump(link, up_reader, writer, DOWN)),
            ]
            await asyncio.gather(*link.tasks, return_exceptions=True)
        finally:
            self._links.discard(link)
            for side in (link.client, link.server):
                if side is not None and not side.transport.is_closing():
                    side.transport.close()

    async def _pump(
        self,
        link: _Link,
        source: asyncio.StreamReader,
        sink: asyncio.StreamWriter,
        direction: str,
    ) -> None:
        assert self._flowing is not None
        try:
            while data := await source.read(CHUNK_BYTES):
                if self._on_data is not None:
                    self._on_data(direction, link.id, data)
                if direction == UP:
                    self.stats.bytes_up += len(data)
                else:
                    self.stats.bytes_down += len(data)
                if not self._flowing.is_set():
                    await self._flowing.wait()
                    if source.at_eof():  # its sender gave up while the path was dead
                        link.reset()
                        return
                if self._delay[direction] > 0:
                    await asyncio.sleep(self._delay[direction])
                if self._reset_next[direction] > 0:
                    self._reset_next[direction] -= 1
                    self.stats.resets += 1
                    if direction == UP:
                        self.stats.reset_requests += 1
                    else:
                        self.stats.reset_responses += 1
                    link.reset()
                    return
                if sink.transport.is_closing():
                    return
                sink.write(data)
                await sink.drain()
            if sink.can_write_eof() and not sink.transport.is_closing():
                sink.write_eof()  # half-close: the other direction may still be answering
        except (ConnectionError, OSError):
            link.reset()
