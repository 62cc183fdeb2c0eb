"""The load generator's Socket.IO client against a server speaking Engine.IO 4 on a real socket.

The server here is scripted: it plays the packets python-socketio sends (open, namespace
accepted or refused, ping, events) so the client's session is checked on a fresh machine,
where the benchmark's socket.io peer is not installed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest
from websockets.asyncio.server import ServerConnection, serve

from tests.conftest import TIMEOUT
from wsgate.bench.client import SocketIOClient, best_client, speaking
from wsgate.bench.protocol import echo_message
from wsgate.bench.socketio_framing import PATH

Script = Callable[[ServerConnection], Awaitable[None]]


async def opened(ws: ServerConnection, answer: str = '40{"sid":"s1"}') -> None:
    """Open the session, wait for the client's `40`, answer it."""
    await ws.send('0{"sid":"e1","upgrades":[],"pingInterval":25000,"pingTimeout":20000}')
    assert await ws.recv() == "40"
    await ws.send(answer)


def run(script: Script, client_side: Callable[[str], Awaitable[None]]) -> None:
    async def main() -> None:
        paths: list[str] = []

        async def handler(ws: ServerConnection) -> None:
            assert ws.request is not None
            paths.append(ws.request.path)
            await script(ws)

        async with serve(handler, "127.0.0.1", 0) as server:
            port = server.sockets[0].getsockname()[1]
            async with asyncio.timeout(TIMEOUT):
                await client_side(f"ws://127.0.0.1:{port}{PATH}")
        assert paths == [PATH]

    asyncio.run(main())


def test_events_go_out_framed_and_come_back_as_bodies() -> None:
    """After open and namespace connect, a body is sent as its event and read back bare."""

    async def script(ws: ServerConnection) -> None:
        await opened(ws)
        event = await ws.recv()
        await ws.send(event)  # what python-socketio's echo handler sends back
        await ws.wait_closed()

    async def client_side(url: str) -> None:
        received: asyncio.Queue[bytes] = asyncio.Queue()
        conn = await SocketIOClient(best_client()).connect(url, received.put_nowait)
        try:
            await conn.send(echo_message())
            assert await received.get() == echo_message()
        finally:
            conn.close()

    run(script, client_side)


def test_a_ping_is_answered_with_a_pong() -> None:
    """The server's `2` gets `3`, or it would drop the client after its ping timeout."""

    async def script(ws: ServerConnection) -> None:
        await opened(ws)
        await ws.send("2")
        assert await ws.recv() == "3"
        await ws.send('42["subscribed","ok"]')
        await ws.wait_closed()

    async def client_side(url: str) -> None:
        received: asyncio.Queue[bytes] = asyncio.Queue()
        conn = await SocketIOClient(best_client()).connect(url, received.put_nowait)
        try:
            assert await received.get() == b"ok"  # sent only once the pong arrived
        finally:
            conn.close()

    run(script, client_side)


def test_a_refused_namespace_connect_fails_the_connection() -> None:
    """`44{...}` is a failure to open, counted as such by the scenarios."""

    async def script(ws: ServerConnection) -> None:
        await opened(ws, answer='44{"message":"not allowed"}')
        await ws.wait_closed()

    async def client_side(url: str) -> None:
        with pytest.raises(ConnectionError, match="not allowed"):
            await speaking("socket.io", best_client()).connect(url)

    run(script, client_side)
