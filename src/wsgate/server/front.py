"""The listening socket's protocol: read one request head, then hand the socket over.

One port serves WebSocket clients and the HTTP `@connections` API. Each new TCP
connection starts here: `FrontDoor` buffers bytes until the request head is complete.
A WebSocket upgrade to a socket path goes to `OpenConnection` (`server/upgrade.py`:
`$connect` runs while reading is paused, then picows takes the socket); anything else
goes to aiohttp, which serves HTTP. Both take over the same transport with the bytes
read so far, so nothing is lost and nothing is parsed twice by the same library.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection, Coroutine
from typing import Any, cast

from wsgate.core.handshake import (
    MAX_HEAD_BYTES,
    HandshakeError,
    RequestHead,
    head_length,
    parse_head,
)
from wsgate.server.transport import hand_over, refuse

log = logging.getLogger("wsgate.server")

#: How long a client may take to send its request head.
HEAD_TIMEOUT = 10.0

#: The gateway's entry point: takes a WebSocket upgrade request (its head, and the bytes
#: that came after it) from here on.
OpenConnection = Callable[[RequestHead, asyncio.Transport, bytes], Coroutine[Any, Any, None]]


class FrontDoor(asyncio.Protocol):
    """Reads a request head; a WebSocket upgrade goes to the gateway, the rest to HTTP."""

    def __init__(
        self,
        socket_paths: Collection[str],
        open_connection: OpenConnection,
        http_protocol: Callable[[], asyncio.Protocol],
        tasks: set[asyncio.Task[None]],
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self._socket_paths = socket_paths
        self._open_connection = open_connection
        self._http_protocol = http_protocol
        self._tasks = tasks
        # Passed in: asyncio.get_running_loop() costs a getpid() system call on 3.11.
        self._loop = loop
        self._buffer = bytearray()
        self._transport: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not derive from asyncio.Transport; they behave as one.
        self._transport = cast(asyncio.Transport, transport)
        self._timer = self._loop.call_later(HEAD_TIMEOUT, self._transport.abort)

    def data_received(self, data: bytes) -> None:
        transport = self._transport
        assert transport is not None
        self._buffer += data
        length = head_length(self._buffer)
        if length < 0 and len(self._buffer) <= MAX_HEAD_BYTES:
            return  # wait for the rest of the head
        self._stop_timer()
        received = bytes(self._buffer)
        self._buffer.clear()
        if length < 0 or length > MAX_HEAD_BYTES:
            refuse(
                transport, 431, "Request Header Fields Too Large", "the request head is over 16 KB"
            )
            return
        try:
            head = parse_head(received[:length])
        except HandshakeError as error:
            refuse(transport, error.status, "Bad Request", error.message)
            return
        if not head.is_websocket_upgrade or head.path not in self._socket_paths:
            hand_over(transport, self._http_protocol(), received)
            return
        transport.pause_reading()
        task = self._loop.create_task(self._open_connection(head, transport, received[length:]))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(self._opened)

    def _opened(self, task: asyncio.Task[None]) -> None:
        """A failure the gateway did not answer must not leave the socket paused forever."""
        if not task.cancelled() and task.exception() is not None:
            log.error("opening a WebSocket connection failed", exc_info=task.exception())
            if self._transport is not None:
                self._transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_timer()

    def _stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
