"""The load generator's WebSocket client: picows when installed, else python-websockets.

Both call `on_message(bytes)` for every text frame as it arrives, so the scenarios are
written once; picows does it from the protocol callback without a task per connection,
which keeps the load generator off the critical path. `SocketIOClient` speaks Socket.IO
over either, for the socket.io server, and hands the scenarios the same bodies.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal, Protocol

from wsgate.bench import optional, socketio_framing

OnMessage = Callable[[bytes], None]
#: What a server speaks over its WebSocket connections: the benchmark's JSON bodies as
#: they are, or wrapped in Socket.IO's packets.
Framing = Literal["websocket", "socket.io"]

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


# -- socket.io over either --------------------------------------------------------------


class _SocketIOConnection:
    """One Socket.IO session on a WebSocket connection: hands events' data on, pongs."""

    def __init__(self, on_message: OnMessage) -> None:
        loop = asyncio.get_running_loop()
        self.on_message = on_message
        self.opened: asyncio.Future[None] = loop.create_future()
        self.connected: asyncio.Future[None] = loop.create_future()
        self.websocket: Connection | None = None
        self.pong: asyncio.Task[None] | None = None

    def receive(self, packet: bytes) -> None:
        kind, payload = socketio_framing.decode(packet)
        if kind is socketio_framing.Packet.EVENT:
            self.on_message(payload)
        elif kind is socketio_framing.Packet.PING and self.websocket is not None:
            self.pong = asyncio.ensure_future(self.websocket.send(socketio_framing.PONG))
        elif kind is socketio_framing.Packet.OPEN and not self.opened.done():
            self.opened.set_result(None)
        elif kind is socketio_framing.Packet.CONNECTED and not self.connected.done():
            self.connected.set_result(None)
        elif kind is socketio_framing.Packet.CONNECT_ERROR and not self.connected.done():
            reason = payload.decode(errors="replace")
            self.connected.set_exception(ConnectionError(f"socket.io refused: {reason}"))

    async def send(self, data: bytes) -> None:
        assert self.websocket is not None, "connect() sets it first"
        await self.websocket.send(socketio_framing.encode_event(data))

    def close(self) -> None:
        if self.websocket is not None:
            self.websocket.close()


class SocketIOClient:
    """Socket.IO (Engine.IO 4) over another client's WebSocket connections.

    A connection counts as open once the server has opened the Engine.IO session and
    accepted it into the default namespace, as a socket.io client's `connect` does.
    """

    def __init__(self, websocket_client: Client) -> None:
        self.websocket_client = websocket_client
        self.name = f"{websocket_client.name} + socket.io"

    async def connect(self, url: str, on_message: OnMessage = _ignore) -> Connection:
        session = _SocketIOConnection(on_message)
        session.websocket = await self.websocket_client.connect(url, session.receive)
        try:
            async with asyncio.timeout(OPEN_TIMEOUT):
                await session.opened
                await session.websocket.send(socketio_framing.CONNECT)
                await session.connected
        except BaseException:
            session.close()
            raise
        return session


def speaking(framing: Framing, client: Client) -> Client:
    """`client`, or `client` speaking Socket.IO over its connections."""
    return SocketIOClient(client) if framing == "socket.io" else client


def best_client() -> Client:
    """The fastest client library installed; RuntimeError if there is none."""
    if _picows is not None:
        return PicowsClient()
    if optional.load("websockets") is not None:
        return WebsocketsClient()
    raise RuntimeError("the load generator needs picows or websockets: pip install 'wsgate[bench]'")
