"""The listening socket, kept listening whatever accept() meets.

uvloop closes a server whose accept fails (EMFILE when the process is out of file
descriptors, ENFILE, ENOMEM), silently: the gateway would then accept nobody until it is
restarted. So the gateway owns its listening socket and hands the event loop a duplicate
of it; if the loop's server stops serving while the gateway runs, a new server is made
from another duplicate of the same, still listening, socket. Connections that waited in
the kernel's queue meanwhile are accepted then.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable

log = logging.getLogger("wsgate.server")

#: How often the listener checks that the loop still accepts on it.
CHECK_INTERVAL = 0.5


class Listener:
    """Accepts on `sock` with `factory`'s protocols until `close()`."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        factory: Callable[[], asyncio.BaseProtocol],
        sock: socket.socket,
        backlog: int,
    ) -> None:
        self._loop = loop
        self._factory = factory
        #: Owned here; the loop's servers get duplicates (closing theirs leaves it open).
        self.sock = sock
        self._backlog = backlog
        self._server: asyncio.Server | None = None
        self._watch: asyncio.Task[None] | None = None

    @property
    def port(self) -> int:
        return int(self.sock.getsockname()[1])

    async def start(self) -> None:
        self._server = await self._serve()
        self._watch = self._loop.create_task(self._keep_serving(), name="wsgate-listener")

    async def _serve(self) -> asyncio.Server:
        return await self._loop.create_server(
            self._factory, sock=self.sock.dup(), backlog=self._backlog
        )

    async def _keep_serving(self) -> None:
        while True:
            await asyncio.sleep(CHECK_INTERVAL)
            server = self._server
            if server is None or server.is_serving():
                continue
            log.error(
                "the listening socket stopped accepting (out of file descriptors?); "
                "accepting again on port %d",
                self.port,
            )
            server.close()
            try:
                self._server = await self._serve()
            except OSError as exc:  # still out of descriptors: try again next time
                log.error("cannot accept again yet: %s", exc)

    def close(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
        if self._server is not None:
            self._server.close()
        with contextlib.suppress(OSError):
            self.sock.close()


def listening_socket(host: str, port: int, backlog: int) -> socket.socket:
    """A TCP socket listening on host:port (port 0: a free one), without SO_REUSEPORT: a
    second gateway on the same port fails to bind instead of sharing the traffic."""
    info = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, kind, proto, _, address = info[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(address)
        sock.listen(backlog)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock
