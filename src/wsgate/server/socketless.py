"""Gateways without sockets.

`socketless_gateway`: one connection on a transport that writes nowhere, for measuring the
gateway's own CPU per message (`python -m wsgate.bench.hotpath`) and for tests of what
happens between frames and writes (back-pressure) without a network.

`MemoryTransport`: a whole connection in memory, from its request head on, for
`wsgate.testing`'s socketless mode (`TestGateway(app, socketless=True)`).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from collections.abc import AsyncIterator, Iterable
from typing import Any, Protocol, cast

from picows import WSMsgType

from wsgate.app import App
from wsgate.core.compression import DeflateParameters, MessageDeflate
from wsgate.core.events import ConnectionContext
from wsgate.core.limits import Limits
from wsgate.server.connection import LiveConnection
from wsgate.server.gateway import Gateway
from wsgate.server.transport import feed
from wsgate.store.base import ConnectionRecord
from wsgate.store.memory import MemoryStore


class _Reading:
    """The asyncio transport under a picows one: never backed up."""

    def pause_reading(self) -> None: ...
    def resume_reading(self) -> None: ...
    def get_write_buffer_size(self) -> int:
        return 0


class SocketlessTransport:
    """What the gateway uses of a picows transport; writes are counted (and kept, if
    asked: tests), disconnects recorded, nothing reaches a socket."""

    is_disconnected = False
    is_close_frame_sent = False
    close_handshake = None
    underlying_transport = _Reading()

    def __init__(self, keep: bool = False) -> None:
        self.sent = 0
        self.frames: list[bytes] | None = [] if keep else None
        self.disconnects: list[bool] = []  # the `graceful` of each disconnect()

    def send(self, kind: WSMsgType, data: bytes, fin: bool = True, rsv1: bool = False) -> None:
        self.sent += 1
        if self.frames is not None:
            self.frames.append(data)

    def disconnect(self, graceful: bool = True) -> None:
        self.disconnects.append(graceful)


@contextlib.asynccontextmanager
async def socketless_gateway(
    served: App,
    limits: Limits | None = None,
    keep: bool = False,
    deflate: DeflateParameters | None = None,
) -> AsyncIterator[tuple[Gateway, LiveConnection, Any]]:
    """A started gateway holding one connection on a `SocketlessTransport` (which
    negotiated permessage-deflate with `deflate`, if given); stopped after."""
    gateway = Gateway(served, MemoryStore(), limits=limits)
    await gateway.start()
    try:
        conn, transport = await socketless_connection(gateway, "socketless00000=", keep, deflate)
        yield gateway, conn, transport
    finally:
        gateway.live.clear()
        await gateway.stop()


async def socketless_connection(
    gateway: Gateway,
    connection_id: str,
    keep: bool = False,
    deflate: DeflateParameters | None = None,
) -> tuple[LiveConnection, SocketlessTransport]:
    """One more open connection on `gateway`, stored and live, on a `SocketlessTransport`."""
    info = ConnectionContext(
        connection_id=connection_id,
        connected_at=time.time_ns() // 1_000_000,
        source_ip="127.0.0.1",
        user_agent=None,
        domain_name="127.0.0.1",
        stage="dev",
        api_id="socketless",
    )
    codec = MessageDeflate(deflate) if deflate is not None else None
    conn = LiveConnection(gateway, info, gateway.limits, codec)
    transport = SocketlessTransport(keep)
    conn.on_ws_connected(cast(Any, transport))
    gateway.live[connection_id] = conn
    await gateway.store.add_connection(
        ConnectionRecord(connection_id, info.connected_at, info.source_ip, stage="dev")
    )
    return conn, transport


class _NoSocket:
    """What picows asks of a transport's socket: options to set and read (none here: 0),
    and a descriptor. There is none (-1): picows' direct `send()` fails at once, and it
    writes through the transport, as it does whenever a socket's buffer holds bytes."""

    def setsockopt(self, *args: Any) -> None: ...

    def getsockopt(self, *args: Any) -> int:
        return 0

    def fileno(self) -> int:
        return -1


class PipeEnd(Protocol):
    """The client's end of a `MemoryTransport`: what the gateway writes, and the end."""

    def data_received(self, data: bytes) -> None: ...
    def connection_lost(self) -> None: ...


class MemoryTransport(asyncio.Transport):
    """The gateway's end of an in-memory connection: a TCP connection without a socket.

    What the gateway writes goes to `client` on the next turn of the loop; what the
    client `send`s reaches the gateway's protocol the same way (held while the gateway has
    paused reading). Its protocol starts as the gateway's front door (`Server.front_door`),
    so a connection goes the way a socket's does: request head, `$connect`, picows' 101
    and frames, close handshake. Nothing waits to be written, so nothing backs up.
    """

    def __init__(
        self, loop: asyncio.AbstractEventLoop, protocol: asyncio.BaseProtocol, client: PipeEnd
    ) -> None:
        super().__init__()
        self._loop = loop
        self._protocol = protocol
        self._client = client
        #: What the client sent and the gateway has not read yet, in order.
        self._incoming: collections.deque[bytes] = collections.deque()
        self._reading = True
        self._closed = False
        protocol.connection_made(self)

    # -- the client's side -----------------------------------------------------------

    def send(self, data: bytes) -> None:
        """The client sent `data` (on the loop): the gateway reads it on the next turn."""
        if not self._closed:
            self._incoming.append(data)
            if len(self._incoming) == 1:
                self._loop.call_soon(self._deliver)

    def _deliver(self) -> None:
        while self._incoming and self._reading and not self._closed:
            feed(self._protocol, self._incoming.popleft())

    # -- asyncio.Transport -----------------------------------------------------------

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not self._closed:
            self._loop.call_soon(self._client.data_received, bytes(data))

    def writelines(self, list_of_data: Iterable[bytes | bytearray | memoryview]) -> None:
        self.write(b"".join(list_of_data))

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._loop.call_soon(self._protocol.connection_lost, None)
        self._loop.call_soon(self._client.connection_lost)

    abort = close

    def is_closing(self) -> bool:
        return self._closed

    def pause_reading(self) -> None:
        self._reading = False

    def resume_reading(self) -> None:
        if not self._reading:
            self._reading = True
            self._loop.call_soon(self._deliver)

    def is_reading(self) -> bool:
        return self._reading

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._protocol = protocol

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._protocol

    def get_write_buffer_size(self) -> int:
        return 0

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {
            "socket": _NoSocket(),
            "peername": ("127.0.0.1", 0),
            "sockname": ("127.0.0.1", 0),
        }.get(name, default)
