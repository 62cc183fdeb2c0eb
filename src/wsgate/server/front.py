"""The listening socket's protocol: read one request head, then hand the socket over.

One port serves WebSocket clients and the HTTP `@connections` API. Each new TCP
connection starts here: `FrontDoor` buffers bytes until the request head is complete.
A WebSocket upgrade to a socket path goes to the gateway, which runs `$connect` while
reading is paused and then gives the socket to picows (`hand_to_picows`); anything else
goes to aiohttp, which serves HTTP. Both take over the same transport with the bytes
read so far, so nothing is lost and nothing is parsed twice by the same library.

picows is the fastest WebSocket implementation Python has (Cython, frames parsed in
place, no per-message task); using its protocol class directly, rather than through
`ws_create_server`, is what lets an asynchronous `$connect` run before the 101.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Collection, Coroutine
from typing import Any, cast

from picows import WSListener, WSUpgradeResponse, WSUpgradeResponseWithListener
from picows.picows import WSAutoPingStrategy, WSProtocol  # type: ignore[attr-defined]

from wsgate.core.handshake import (
    MAX_HEAD_BYTES,
    HandshakeError,
    RequestHead,
    canonical_upgrade,
    head_length,
    parse_head,
)

#: picows logs two INFO lines per connection; they stay out of `--log-level info` unless
#: this logger is lowered. An adapter, so picows does not make a child logger per socket.
_picows_logger = logging.getLogger("wsgate.websocket")
_picows_logger.setLevel(logging.WARNING)
_picows_log = logging.LoggerAdapter(_picows_logger, {})
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


def hand_over(
    transport: asyncio.Transport, protocol: asyncio.BaseProtocol, received: bytes
) -> None:
    """Make `protocol` the transport's protocol, as if it had read `received` itself."""
    transport.set_protocol(protocol)
    protocol.connection_made(transport)
    if isinstance(protocol, asyncio.BufferedProtocol):
        view = memoryview(received)
        while view:
            buffer = memoryview(protocol.get_buffer(len(view)))
            n = min(len(buffer), len(view))
            buffer[:n] = view[:n]
            protocol.buffer_updated(n)
            view = view[n:]
    elif received:
        assert isinstance(protocol, asyncio.Protocol)
        protocol.data_received(received)
    transport.resume_reading()


def hand_to_picows(
    transport: asyncio.Transport,
    head: RequestHead,
    rest: bytes,
    listener: WSListener,
    *,
    max_frame_bytes: int,
    subprotocol: str | None,
) -> None:
    """Let picows answer the checked upgrade `head` (101) and serve the socket, frames to
    `listener`; `rest` is what the client sent after the head."""
    headers = {"Sec-WebSocket-Protocol": subprotocol} if subprotocol else None

    def accept(request: Any) -> WSUpgradeResponseWithListener:
        return WSUpgradeResponseWithListener(
            WSUpgradeResponse.create_101_response(extra_headers=headers), listener
        )

    protocol = WSProtocol(
        None,  # host:port (client side only)
        None,  # path (client side only)
        False,  # is_client_side
        accept,
        _picows_log,
        True,  # disconnect_on_exception
        None,  # handshake timeout: the head is already here
        False,  # auto ping: API Gateway does not ping clients
        20.0,
        20.0,
        WSAutoPingStrategy.PING_WHEN_IDLE,
        True,  # answer pings with pongs, as API Gateway does
        max_frame_bytes,
        None,  # extra headers (client side only)
        1024,  # initial read buffer; it grows for big messages, idle sockets stay small
    )
    hand_over(transport, protocol, canonical_upgrade(head) + rest)


def write_response(
    transport: asyncio.Transport,
    status: int,
    reason: str,
    body: bytes,
    headers: tuple[tuple[str, str], ...] = (),
    content_type: str = "application/json",
) -> None:
    """Answer the request head with a complete HTTP response and close the connection."""
    lines = [f"HTTP/1.1 {status} {reason}"]
    lines.extend(f"{name}: {value}" for name, value in headers)
    lines.append(f"Content-Type: {content_type}")
    lines.append(f"Content-Length: {len(body)}")
    lines.append("Connection: close")
    transport.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
    transport.close()


def refuse(
    transport: asyncio.Transport,
    status: int,
    reason: str,
    message: str,
    headers: tuple[tuple[str, str], ...] = (),
) -> None:
    """Answer with an HTTP error and API Gateway's JSON body (`{"message": ...}`), and close."""
    body = json.dumps({"message": message}).encode()
    write_response(transport, status, reason, body, headers)
