"""`send` to a backed-up client waits for it to read: each sender on its own, none lost."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from picows import WSMsgType

from wsgate import App, GoneError, Limits
from wsgate.core.events import ConnectionContext
from wsgate.core.limits import Close
from wsgate.server.gateway import Gateway, LiveConnection
from wsgate.store.memory import MemoryStore


class _Reading:
    def pause_reading(self) -> None: ...
    def resume_reading(self) -> None: ...
    def get_write_buffer_size(self) -> int:
        return 0


class _Transport:
    """What the gateway uses of a picows transport; records what is sent."""

    is_disconnected = False
    is_close_frame_sent = False
    underlying_transport = _Reading()

    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def send(self, kind: WSMsgType, data: bytes) -> None:
        self.sent.append(data)


async def _gateway_with_one_connection(limits: Limits) -> tuple[Gateway, LiveConnection, Any]:
    gateway = Gateway(App(), MemoryStore(), limits=limits)
    await gateway.start()
    info = ConnectionContext(
        connection_id="backpressure000=",
        connected_at=time.time_ns() // 1_000_000,
        source_ip="127.0.0.1",
        user_agent=None,
        domain_name="127.0.0.1",
        stage="dev",
        api_id="bp00000000",
    )
    conn = LiveConnection(gateway, info, limits.max_concurrent_messages)
    transport: Any = _Transport()
    conn.on_ws_connected(transport)
    gateway.live[info.connection_id] = conn
    return gateway, conn, transport


def test_one_sender_cancelled_does_not_cancel_the_others() -> None:
    """Two handlers wait on one backed-up client; one times out; the other goes on when
    the client catches up (a shared future would have cancelled both)."""

    async def main() -> None:
        gateway, conn, transport = await _gateway_with_one_connection(Limits())
        try:
            conn.pause_writing()
            first = asyncio.ensure_future(gateway.send(conn.info.connection_id, "one"))
            second = asyncio.ensure_future(gateway.send(conn.info.connection_id, "two"))
            await asyncio.sleep(0)
            assert not first.done() and not second.done()  # both wait for the client
            first.cancel()  # what a handler timeout does to its task
            await asyncio.sleep(0)
            assert not second.done()
            conn.resume_writing()
            await asyncio.wait_for(second, 1)
            assert first.cancelled()
            assert transport.sent == [b"one", b"two"]  # both were written; one stopped waiting
        finally:
            gateway.live.clear()
            await gateway.stop()

    asyncio.run(main())


def test_a_client_that_never_catches_up_is_dropped_and_its_senders_released() -> None:
    """Past `max_send_wait` the client is dropped as a slow consumer; its senders get 410."""

    async def main() -> None:
        gateway, conn, transport = await _gateway_with_one_connection(Limits(max_send_wait=0.05))
        disconnects: list[bool] = []
        transport.disconnect = lambda graceful=True: disconnects.append(graceful)
        try:
            conn.pause_writing()
            waiting = gateway.send(conn.info.connection_id, "x")
            await asyncio.sleep(0.2)
            assert disconnects == [False]  # dropped, not a graceful close
            assert conn.close is not None and conn.close.code == 1006
            gateway._disconnected(conn, None)  # what picows reports next
            with pytest.raises(GoneError):  # released, told the message was lost: 410
                await asyncio.wait_for(waiting, 1)
            assert conn.drain_waiters is None and conn.drain_timer is None
        finally:
            gateway.live.clear()
            await gateway.stop()

    asyncio.run(main())


def test_a_client_that_closed_and_stopped_reading_still_releases_its_senders() -> None:
    """The client sent its close frame and reads nothing more: the graceful disconnect
    would wait for ever on the full buffer, so the drop aborts it, keeping the client's
    own close code for `$disconnect`."""

    async def main() -> None:
        gateway, conn, transport = await _gateway_with_one_connection(Limits(max_send_wait=0.05))
        disconnects: list[bool] = []
        transport.disconnect = lambda graceful=True: disconnects.append(graceful)
        try:
            conn.pause_writing()
            waiting = gateway.send(conn.info.connection_id, "x")
            conn.peer_close = Close(1000, "bye")  # what a close frame from the client sets
            await asyncio.sleep(0.2)
            assert disconnects == [False]
            assert conn.close is None  # `$disconnect` will say 1000 "bye"
            gateway._disconnected(conn, None)
            assert conn.close == Close(1000, "bye")
            with pytest.raises(GoneError):
                await asyncio.wait_for(waiting, 1)
        finally:
            gateway.live.clear()
            await gateway.stop()

    asyncio.run(main())
