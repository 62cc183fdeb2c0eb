"""Test your app against the real gateway, in-process: `TestGateway` and `TestClient`.

    from wsgate.testing import TestGateway

    def test_direct_message():
        with TestGateway(app) as gateway:
            alice, bob = gateway.connect(), gateway.connect(query={"token": "b"})
            alice.send({"action": "sendMessage", "connectionId": bob.connection_id,
                        "message": "hi"})
            assert bob.receive() == "hi"
            alice.expect_nothing()

The gateway runs on 127.0.0.1 on a free port, in a thread with its own event loop, with
an in-memory store unless told otherwise; clients are real WebSocket clients (the
`websockets` library's), so a test sees exactly what a browser would: handshake statuses,
frames, close codes. Everything here blocks, with timeouts, so tests stay plain functions.
With pytest, the `wsgate_gateway` fixture starts gateways and stops them after the test
(`wsgate_gateway(app)`). Needs `pip install 'wsgate[testing]'` (websockets; boto3 for
`management_client`).

`TestGateway(app, socketless=True)` opens no socket at all: each client's bytes travel in
memory (`server/socketless.py`), through the same front door, `$connect`, picows framing
and close handshake, with websockets' own client protocol on the other end; the clients
are the same `TestClient`s. What needs a real port is not there: `url` is for show, and
boto3 (`management_client`) needs HTTP; `management_call` runs the same `@connections`
API in either mode.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import queue
import threading
from collections.abc import Awaitable, Callable, Iterable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit

from wsgate.app import App
from wsgate.exceptions import WsgateError
from wsgate.server.front import FrontDoor
from wsgate.server.management import ManagementAPI, ManagementResponse, parse_path
from wsgate.server.runner import Server, serve
from wsgate.server.socketless import MemoryTransport

if TYPE_CHECKING:
    from websockets.client import ClientProtocol

__all__ = ["HandshakeRefused", "TestClient", "TestGateway", "WebSocket"]

#: Seconds a test waits for anything (a start, a message, a close) by default.
TIMEOUT = 5.0

T = TypeVar("T")

#: Why a socketless TestGateway has no `management_url` (nor `management_client`).
NO_HTTP = (
    "boto3 needs an HTTP endpoint, which a socketless TestGateway does not have: use "
    "management_call (the same @connections API, in process), or TestGateway(app) with a port"
)


class HandshakeRefused(WsgateError):
    """The gateway answered the upgrade with an HTTP error (`$connect` or a check refused)."""

    def __init__(self, status: int, body: bytes) -> None:
        super().__init__(f"handshake refused with HTTP {status}: {body.decode(errors='replace')}")
        self.status = status
        self.body = body

    def json(self) -> Any:
        """The refusal's JSON body (API Gateway's `{"message": ...}`)."""
        return json.loads(self.body)


class TestGateway:
    """An app served by the real gateway on a free loopback port, for the `with` block."""

    __test__ = False  # not a test class, whatever pytest thinks of the name

    def __init__(
        self, app: App, *, store: str = "memory://", socketless: bool = False, **options: Any
    ) -> None:
        """`options` are `wsgate.server.serve`'s (stage, limits, api_id, ...); `socketless`:
        no port, clients connect in memory."""
        self.app = app
        self.socketless = socketless
        self._options = {"store": store, "port": 0, "host": "127.0.0.1", **options}
        if socketless:
            self._options["listen"] = False
        self._server: Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stop: asyncio.Event | None = None
        self._connecting = threading.Lock()
        self._clients: list[TestClient] = []
        #: What the gateway raised (at start, or while stopping).
        self._failure: list[BaseException] = []

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> TestGateway:
        """Start serving (what `with` does); raises what the gateway raised at start."""
        if self._server is not None:
            return self
        ready = threading.Event()
        failure = self._failure = []
        loop = asyncio.new_event_loop()

        async def main() -> None:
            self._stop = asyncio.Event()
            try:
                async with serve(self.app, **self._options) as server:
                    self._server = server
                    ready.set()
                    await self._stop.wait()
            except BaseException as exc:
                failure.append(exc)
                ready.set()

        self._loop = loop
        self._thread = threading.Thread(
            target=loop.run_until_complete, args=(main(),), name="wsgate-test", daemon=True
        )
        self._thread.start()
        ready.wait(TIMEOUT * 2)
        if failure or self._server is None:
            self._thread.join(TIMEOUT)
            loop.close()
            if failure:
                raise failure[0]
            raise WsgateError("the gateway did not start")
        return self

    def stop(self) -> None:
        """Close every client, stop the gateway (`$disconnect` runs for each connection)."""
        for client in self._clients:
            client.close()
        loop, thread, stop = self._loop, self._thread, self._stop
        if loop is None or thread is None or stop is None:
            return
        loop.call_soon_threadsafe(stop.set)
        thread.join(TIMEOUT * 4)
        loop.close()
        self._server = self._loop = self._thread = self._stop = None
        if self._failure:  # the gateway failed while stopping: the test must hear of it
            raise self._failure[0]

    def __enter__(self) -> TestGateway:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # -- where it is -------------------------------------------------------------------

    @property
    def server(self) -> Server:
        if self._server is None:
            raise WsgateError("the TestGateway is not started: use `with TestGateway(app)`")
        return self._server

    @property
    def url(self) -> str:
        """The WebSocket URL, stage included (`ws://127.0.0.1:PORT/dev`)."""
        return self.server.url

    @property
    def management_url(self) -> str:
        """The `endpoint_url` for boto3's `apigatewaymanagementapi` client."""
        if self.socketless:
            raise WsgateError(NO_HTTP)
        return self.server.management_url

    # -- clients -----------------------------------------------------------------------

    def connect(
        self,
        *,
        query: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        subprotocols: list[str] | None = None,
        timeout: float = TIMEOUT,
    ) -> TestClient:
        """Open a WebSocket (running `$connect`); HandshakeRefused if it is refused."""
        _require_websockets()
        from websockets.exceptions import InvalidStatus
        from websockets.sync.client import connect
        from websockets.typing import Subprotocol

        url = self.url + (f"?{urlencode(query)}" if query else "")
        with self._connecting:  # one at a time: the new id is the one that appeared
            before = set(self._call(self._live_ids))
            websocket: WebSocket
            try:
                if self.socketless:
                    assert self._loop is not None
                    websocket = MemoryWebSocket.open(
                        self._loop,
                        self.server.front_door,
                        url,
                        headers=headers or {},
                        subprotocols=subprotocols or (),
                        timeout=timeout,
                    )
                else:
                    connection = connect(
                        url,
                        additional_headers=dict(headers or {}),
                        subprotocols=[Subprotocol(name) for name in subprotocols or ()] or None,
                        open_timeout=timeout,
                        close_timeout=timeout,
                    )
                    # Entered as a context manager would be; `close()` (or `stop()`) exits it.
                    websocket = connection.__enter__()
            except InvalidStatus as exc:
                raise _refused(exc) from None
            new = [cid for cid in self._call(self._live_ids) if cid not in before]
        client = TestClient(websocket, new[0] if len(new) == 1 else None)
        self._clients.append(client)
        return client

    def management_client(self) -> Any:
        """boto3's real `apigatewaymanagementapi` client for this gateway (dummy keys)."""
        endpoint_url = self.management_url  # WsgateError if socketless
        import boto3

        return boto3.client(
            "apigatewaymanagementapi",
            endpoint_url=endpoint_url,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    def management_call(self, method: str, path: str, body: bytes = b"") -> ManagementResponse:
        """One `@connections` call (`"POST", "/@connections/ID", b"hi"`), answered by the
        gateway's management API in process, as over HTTP: status, headers, JSON body."""
        parsed = parse_path(path, self.server.gateway.stage)
        if parsed is None:
            raise WsgateError(f"{path!r} is not an @connections path")
        api = ManagementAPI.of(self.server.gateway)
        query = dict(parse_qsl(urlsplit(path).query))  # ?limit=N&nextToken=T
        return self._call(lambda: api.handle(method, parsed, body, query))

    # -- what the gateway holds --------------------------------------------------------

    def connection_ids(self) -> list[str]:
        """The connections open on the gateway now."""
        return sorted(self._call(self._live_ids))

    def topics(self, connection_id: str) -> list[str]:
        """The topics `connection_id` is subscribed to, from the store."""
        return self._call(lambda: self.server.gateway.store.topics(connection_id))

    def subscribers(self, topic: str) -> list[str]:
        """The connections subscribed to `topic`, from the store."""
        return sorted(self._call(lambda: self.server.gateway.store.subscribers(topic)))

    async def _live_ids(self) -> list[str]:
        return list(self.server.gateway.live)

    def _call(self, operation: Callable[[], Awaitable[T]]) -> T:
        """Run `operation()` on the gateway's loop and wait for it."""
        if self._loop is None:
            raise WsgateError("the TestGateway is not started")

        async def run() -> T:
            return await operation()

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(TIMEOUT)


class WebSocket(Protocol):
    """What a `TestClient` uses of its WebSocket: websockets' sync client, or a
    `MemoryWebSocket` (socketless)."""

    def send(self, message: str | bytes) -> None: ...
    def recv(self, timeout: float | None = None) -> str | bytes: ...
    def close(self, code: int = 1000, reason: str = "") -> None: ...


class TestClient:
    """One WebSocket client of a `TestGateway`."""

    __test__ = False

    def __init__(self, websocket: WebSocket, connection_id: str | None) -> None:
        self.websocket = websocket
        #: The id the gateway gave this connection (what handlers see as connectionId).
        self.connection_id = connection_id or ""

    def send(self, data: str | bytes | Mapping[str, Any] | list[Any]) -> None:
        """Send a text (`str`, or JSON for a dict or list) or binary (`bytes`) message."""
        if isinstance(data, Mapping | list):
            data = json.dumps(data)
        self.websocket.send(data)

    def receive(self, timeout: float = TIMEOUT) -> str | bytes:
        """The next message; TimeoutError if none comes within `timeout`."""
        return self.websocket.recv(timeout=timeout)

    def receive_json(self, timeout: float = TIMEOUT) -> Any:
        """The next message, parsed as JSON."""
        return json.loads(self.receive(timeout))

    def expect_nothing(self, within: float = 0.2) -> None:
        """Assert that no message arrives within `within` seconds."""
        try:
            message = self.websocket.recv(timeout=within)
        except TimeoutError:
            return
        raise AssertionError(f"expected no message, got {message!r}")

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Close from the client's side (`$disconnect` sees this code and reason)."""
        self.websocket.close(code, reason)

    def wait_closed(self, timeout: float = TIMEOUT) -> tuple[int | None, str | None]:
        """Wait until the gateway closes the connection; its close code and reason."""
        from websockets.exceptions import ConnectionClosed

        try:
            while True:
                self.websocket.recv(timeout=timeout)
        except ConnectionClosed as closed:
            frame = closed.rcvd
            return (frame.code, frame.reason) if frame is not None else (None, None)


class MemoryWebSocket:
    """A WebSocket client whose bytes travel in memory to a gateway's front door: websockets'
    own client protocol (sans I/O) on the gateway's loop, and the parts of websockets' sync
    client a `TestClient` calls (`send`, `recv`, `close`), for the test's thread."""

    def __init__(self, loop: asyncio.AbstractEventLoop, protocol: ClientProtocol) -> None:
        self._loop = loop
        self._protocol = protocol
        self._transport: MemoryTransport | None = None
        self._handshake: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._messages: queue.Queue[str | bytes | None] = queue.Queue()  # None: closed
        self._fragments: list[bytes] = []
        self._text = False  # what the message being assembled is
        self._closed = threading.Event()

    @classmethod
    def open(
        cls,
        loop: asyncio.AbstractEventLoop,
        front_door: Callable[[], FrontDoor],
        url: str,
        *,
        headers: Mapping[str, str],
        subprotocols: Iterable[str],
        timeout: float,
    ) -> MemoryWebSocket:
        """Send the upgrade request and wait for the answer: InvalidStatus if refused."""
        from websockets.client import ClientProtocol
        from websockets.typing import Subprotocol
        from websockets.uri import parse_uri

        protocol = ClientProtocol(
            parse_uri(url), subprotocols=[Subprotocol(name) for name in subprotocols] or None
        )
        request = protocol.connect()
        request.headers.update(headers)
        client = cls(loop, protocol)

        def start() -> None:
            client._transport = MemoryTransport(loop, front_door(), client)
            protocol.send_request(request)
            client._flush()

        loop.call_soon_threadsafe(start)
        try:
            client._handshake.result(timeout)
        except concurrent.futures.TimeoutError:
            raise TimeoutError(f"no answer to the upgrade request within {timeout:g}s") from None
        return client

    # -- the test's thread -------------------------------------------------------------

    def send(self, message: str | bytes) -> None:
        """Send without waiting, as a socket's write does (ConnectionClosed once closed)."""
        from websockets.protocol import State

        if self._protocol.state is not State.OPEN:
            raise self._protocol.close_exc

        def send_now() -> None:
            if self._protocol.state is not State.OPEN:
                return  # closed meanwhile: lost, as bytes written to a closing socket are
            if isinstance(message, str):
                self._protocol.send_text(message.encode())
            else:
                self._protocol.send_binary(message)
            self._flush()

        self._loop.call_soon_threadsafe(send_now)

    def recv(self, timeout: float | None = None) -> str | bytes:
        try:
            message = self._messages.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError(f"no message within {timeout:g}s") from None
        if message is None:
            self._messages.put(None)  # closed for every later call too
            raise self._protocol.close_exc
        return message

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Start the closing handshake and wait for the gateway to end the connection."""
        from websockets.protocol import State

        def close_now() -> None:
            if self._protocol.state is State.OPEN:
                self._protocol.send_close(code, reason)
                self._flush()

        if not self._closed.is_set():
            self._on_loop(close_now)
            self._closed.wait(TIMEOUT)

    def _on_loop(self, operation: Callable[[], None]) -> None:
        done: concurrent.futures.Future[None] = concurrent.futures.Future()

        def run() -> None:
            try:
                operation()
            except BaseException as exc:
                done.set_exception(exc)
            else:
                done.set_result(None)

        self._loop.call_soon_threadsafe(run)
        done.result(TIMEOUT)

    # -- the gateway's loop (`server.socketless.PipeEnd`) ------------------------------

    def data_received(self, data: bytes) -> None:
        self._protocol.receive_data(data)
        self._events()

    def connection_lost(self) -> None:
        self._protocol.receive_eof()
        self._events()
        self._closed.set()
        self._messages.put(None)
        if not self._handshake.done():
            self._handshake.set_exception(ConnectionError("the gateway closed the connection"))

    def _events(self) -> None:
        from websockets.frames import Frame, Opcode
        from websockets.http11 import Response

        for event in self._protocol.events_received():
            if isinstance(event, Response):
                failure = self._protocol.handshake_exc
                if failure is None:
                    self._handshake.set_result(None)
                else:
                    self._handshake.set_exception(failure)
            elif isinstance(event, Frame) and event.opcode in (
                Opcode.TEXT,
                Opcode.BINARY,
                Opcode.CONT,
            ):
                if event.opcode is not Opcode.CONT:
                    self._text = event.opcode is Opcode.TEXT
                self._fragments.append(bytes(event.data))
                if event.fin:
                    data = b"".join(self._fragments)
                    self._fragments.clear()
                    self._messages.put(data.decode() if self._text else data)
        self._flush()

    def _flush(self) -> None:
        """Hand what the client protocol wrote to the gateway (b"": it closed its side)."""
        assert self._transport is not None
        for data in self._protocol.data_to_send():
            if data:
                self._transport.send(data)
            else:
                self._transport.close()


def _refused(exc: Any) -> HandshakeRefused:
    """websockets' InvalidStatus as a HandshakeRefused."""
    response = exc.response
    return HandshakeRefused(response.status_code, bytes(response.body or b""))


def _require_websockets() -> None:
    try:
        import websockets  # noqa: F401
    except ImportError as exc:
        raise WsgateError(
            "wsgate.testing needs the websockets client: pip install 'wsgate[testing]'"
        ) from exc
