"""The load generator's WebSocket client: picows when installed, else python-websockets.

Both call `on_message(bytes)` for every text frame as it arrives, so the scenarios are
written once; picows does it from the protocol callback without a task per connection,
which keeps the load generator off the critical path.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from wsgate.bench import optional

OnMessage = Callable[[bytes], None]

#: How long one opening handshake may take before it counts as a failure.
OPEN_TIMEOUT = 20.0


class Connection(Protocol):
    """One open client connection."""

    async def send(self, data: bytes) -> None: ...
    def close(self) -> None: ...


class Client(Protocol):
    """A client library: opens connections."""

    name: str

    async def connect(self, url: str, on_message: OnMessage = ...) -> Connection: ...


def _ignore(data: bytes) -> None:
    """The default for connections whose messages nobody reads (idle ones)."""


# -- picows ----------------------------------------------------------------------------

_picows: Any = optional.load("picows")

if TYPE_CHECKING:
    from websockets.asyncio.client import ClientConnection

    _WSListener = object
else:
    _WSListener = _picows.WSListener if _picows is not None else object


class _PicowsListener(_WSListener):
    """Hands text frames to the scenario's callback; answers a close."""

    def __init__(self, on_message: OnMessage) -> None:
        self.on_message = on_message

    def on_ws_frame(self, transport: Any, frame: Any) -> None:
        kind = frame.msg_type
        if kind is _picows.WSMsgType.TEXT:
            self.on_message(frame.get_payload_as_bytes())
        elif kind is _picows.WSMsgType.CLOSE:
            transport.disconnect()


class _PicowsConnection:
    __slots__ = ("transport",)

    def __init__(self, transport: Any) -> None:
        self.transport = transport

    async def send(self, data: bytes) -> None:
        self.transport.send(_picows.WSMsgType.TEXT, data)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.transport.send_close(_picows.WSCloseCode.OK)
            self.transport.disconnect()


class PicowsClient:
    """picows' client (C frame parser, callback per frame)."""

    name = "picows"

    async def connect(self, url: str, on_message: OnMessage = _ignore) -> Connection:
        transport, _ = await _picows.ws_connect(
            lambda: _PicowsListener(on_message), url, websocket_handshake_timeout=OPEN_TIMEOUT
        )
        return _PicowsConnection(transport)


# -- python-websockets -----------------------------------------------------------------


class _WebsocketsConnection:
    def __init__(self, ws: ClientConnection, on_message: OnMessage) -> None:
        self.ws = ws
        self.on_message = on_message
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        from websockets import ConnectionClosed

        with contextlib.suppress(ConnectionClosed):
            while True:
                # decode=False: text frames arrive as bytes, as with picows.
                self.on_message(await self.ws.recv(decode=False))

    async def send(self, data: bytes) -> None:
        await self.ws.send(data, text=True)

    def close(self) -> None:
        # No closing handshake to wait for: the server sees the socket close (1006).
        self.reader.cancel()
        self.ws.transport.close()


class WebsocketsClient:
    """python-websockets' asyncio client: the fallback when picows is not installed."""

    name = "websockets"

    async def connect(self, url: str, on_message: OnMessage = _ignore) -> Connection:
        from websockets.asyncio.client import connect

        ws = await connect(
            url, compression=None, open_timeout=OPEN_TIMEOUT, ping_interval=None, max_queue=None
        )
        return _WebsocketsConnection(ws, on_message)


def best_client() -> Client:
    """The fastest client library installed; RuntimeError if there is none."""
    if _picows is not None:
        return PicowsClient()
    if optional.load("websockets") is not None:
        return WebsocketsClient()
    raise RuntimeError("the load generator needs picows or websockets: pip install 'wsgate[bench]'")
