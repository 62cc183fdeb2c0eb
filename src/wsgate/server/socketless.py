"""A gateway without sockets: one connection on a transport that writes nowhere.

For measuring the gateway's own CPU per message (`python -m wsgate.bench.hotpath`) and for
tests of what happens between frames and writes (back-pressure) without a network.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any, cast

from picows import WSMsgType

from wsgate.app import App
from wsgate.core.compression import DeflateParameters, MessageDeflate
from wsgate.core.events import ConnectionContext
from wsgate.core.limits import Limits
from wsgate.server.connection import LiveConnection
from wsgate.server.gateway import Gateway
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
