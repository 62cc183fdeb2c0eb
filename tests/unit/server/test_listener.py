"""The listening socket is kept listening when the event loop's server gives up on it."""

from __future__ import annotations

import asyncio

import pytest

from wsgate.server import listener as listener_module
from wsgate.server.listener import Listener, listening_socket


class Greeting(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        transport.write(b"hi")
        transport.close()


async def greeted(port: int) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        return await asyncio.wait_for(reader.read(2), 2)
    finally:
        writer.close()


def test_a_server_that_stopped_accepting_is_replaced() -> None:
    """uvloop closes a server whose accept() fails (EMFILE): the listener notices and
    accepts again on the same socket, at the same port."""

    async def main() -> None:
        listener_module.CHECK_INTERVAL = 0.05
        loop = asyncio.get_running_loop()
        sock = listening_socket("127.0.0.1", 0, 16)
        listener = Listener(loop, Greeting, sock, 16)
        await listener.start()
        try:
            assert await greeted(listener.port) == b"hi"
            assert listener._server is not None
            listener._server.close()  # what the loop does when accept fails
            await asyncio.sleep(0.3)
            assert await greeted(listener.port) == b"hi"
        finally:
            listener.close()

    original = listener_module.CHECK_INTERVAL
    try:
        asyncio.run(main())
    finally:
        listener_module.CHECK_INTERVAL = original


def test_a_taken_port_cannot_be_shared() -> None:
    """No SO_REUSEPORT: a second listener on a port in use fails to bind."""
    first = listening_socket("127.0.0.1", 0, 16)
    try:
        with pytest.raises(OSError):
            listening_socket("127.0.0.1", first.getsockname()[1], 16)
    finally:
        first.close()
