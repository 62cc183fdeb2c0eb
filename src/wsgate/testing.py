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
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Awaitable, Callable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlencode

from wsgate.app import App
from wsgate.exceptions import WsgateError
from wsgate.server.runner import Server, serve

if TYPE_CHECKING:
    from websockets.sync.client import ClientConnection

__all__ = ["HandshakeRefused", "TestClient", "TestGateway"]

#: Seconds a test waits for anything (a start, a message, a close) by default.
TIMEOUT = 5.0

T = TypeVar("T")


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

    def __init__(self, app: App, *, store: str = "memory://", **options: Any) -> None:
        """`options` are `wsgate.server.serve`'s (stage, limits, api_id, ...)."""
        self.app = app
        self._options = {"store": store, "port": 0, "host": "127.0.0.1", **options}
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
            try:
                websocket = connect(
                    url,
                    additional_headers=dict(headers or {}),
                    subprotocols=[Subprotocol(name) for name in subprotocols or ()] or None,
                    open_timeout=timeout,
                    close_timeout=timeout,
                )
                # Entered as a context manager would be; `close()` (or `stop()`) exits it.
                websocket.__enter__()
            except InvalidStatus as exc:
                response = exc.response
                raise HandshakeRefused(response.status_code, bytes(response.body or b"")) from None
            new = [cid for cid in self._call(self._live_ids) if cid not in before]
        client = TestClient(websocket, new[0] if len(new) == 1 else None)
        self._clients.append(client)
        return client

    def management_client(self) -> Any:
        """boto3's real `apigatewaymanagementapi` client for this gateway (dummy keys)."""
        import boto3

        return boto3.client(
            "apigatewaymanagementapi",
            endpoint_url=self.management_url,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

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


class TestClient:
    """One WebSocket client of a `TestGateway`."""

    __test__ = False

    def __init__(self, websocket: ClientConnection, connection_id: str | None) -> None:
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


def _require_websockets() -> None:
    try:
        import websockets  # noqa: F401
    except ImportError as exc:
        raise WsgateError(
            "wsgate.testing needs the websockets client: pip install 'wsgate[testing]'"
        ) from exc
