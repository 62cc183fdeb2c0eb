"""`send` to a backed-up client waits for it to read: each sender on its own, none lost."""

from __future__ import annotations

import asyncio

import pytest

from wsgate import App, GoneError, Limits
from wsgate.core.close import Close
from wsgate.server.socketless import socketless_gateway


def test_one_sender_cancelled_does_not_cancel_the_others() -> None:
    """Two handlers wait on one backed-up client; one times out; the other goes on when
    the client catches up (a shared future would have cancelled both)."""

    async def main() -> None:
        async with socketless_gateway(App(), keep=True) as (gateway, conn, transport):
            conn.pause_writing()
            first = asyncio.ensure_future(gateway.delivery.send(conn.info.connection_id, "one"))
            second = asyncio.ensure_future(gateway.delivery.send(conn.info.connection_id, "two"))
            await asyncio.sleep(0)
            assert not first.done() and not second.done()  # both wait for the client
            first.cancel()  # what a handler timeout does to its task
            await asyncio.sleep(0)
            assert not second.done()
            conn.resume_writing()
            await asyncio.wait_for(second, 1)
            assert first.cancelled()
            assert transport.frames == [b"one", b"two"]  # both written; one stopped waiting

    asyncio.run(main())


def test_a_client_that_never_catches_up_is_dropped_and_its_senders_released() -> None:
    """Past `max_send_wait` the client is dropped as a slow consumer; its senders get 410."""

    async def main() -> None:
        async with socketless_gateway(App(), Limits(max_send_wait=0.05)) as (
            gateway,
            conn,
            transport,
        ):
            conn.pause_writing()
            waiting = gateway.delivery.send(conn.info.connection_id, "x")
            await asyncio.sleep(0.2)
            assert transport.disconnects == [False]  # dropped, not a graceful close
            assert conn.close is not None and conn.close.code == 1006
            conn.on_ws_disconnected(None)  # what picows reports next
            with pytest.raises(GoneError):  # released, told the message was lost: 410
                await asyncio.wait_for(waiting, 1)
            assert conn.drain_waiters is None and conn.drain_timer is None

    asyncio.run(main())


def test_a_client_that_closed_and_stopped_reading_still_releases_its_senders() -> None:
    """The client sent its close frame and reads nothing more: the graceful disconnect
    would wait for ever on the full buffer, so the drop aborts it, keeping the client's
    own close code for `$disconnect`."""

    async def main() -> None:
        async with socketless_gateway(App(), Limits(max_send_wait=0.05)) as (
            gateway,
            conn,
            transport,
        ):
            conn.pause_writing()
            waiting = gateway.delivery.send(conn.info.connection_id, "x")
            conn.peer_close = Close(1000, "bye")  # what a close frame from the client sets
            await asyncio.sleep(0.2)
            assert transport.disconnects == [False]
            assert conn.close is None  # `$disconnect` will say 1000 "bye"
            conn.on_ws_disconnected(None)
            assert conn.close == Close(1000, "bye")
            with pytest.raises(GoneError):
                await asyncio.wait_for(waiting, 1)

    asyncio.run(main())
