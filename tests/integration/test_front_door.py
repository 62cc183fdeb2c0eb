"""The network edge (server/front.py): what reaches the gateway, byte by byte.

Raw sockets where a real client would never misbehave the way a test needs it to:
malformed or oversized request heads, bad upgrade requests, a frame sent before the 101,
a client that never finishes its head. The server must answer each clearly and keep
serving everyone else.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import struct
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.conftest import TIMEOUT, recv, run_gateway, ws_connect
from wsgate import App, GoneError, Limits, connections
from wsgate.exceptions import StoreError
from wsgate.server import front
from wsgate.server.runner import Server
from wsgate.store.base import ConnectionRecord
from wsgate.store.memory import MemoryStore

KEY = base64.b64encode(os.urandom(16)).decode()


def echo_app(connects: list[str]) -> App:
    app = App(name="front")

    @app.on_connect
    async def connect(event: dict[str, object], context: object) -> dict[str, int]:
        connects.append("connect")
        return {"statusCode": 200}

    @app.default
    async def default(event: dict[str, str], context: object) -> None:
        await connections.send(event["requestContext"]["connectionId"], event["body"])  # type: ignore[index]

    return app


def recording_app(name: str) -> tuple[App, list[str], list[dict[str, object]]]:
    """An app that records the ids `$connect` saw and the `requestContext` of each
    `$disconnect`."""
    opened: list[str] = []
    disconnects: list[dict[str, object]] = []
    app = App(name=name)

    @app.on_connect
    async def connect(event: dict[str, dict[str, str]], context: object) -> None:
        opened.append(event["requestContext"]["connectionId"])

    @app.on_disconnect
    async def disconnect(event: dict[str, dict[str, object]], context: object) -> None:
        disconnects.append(event["requestContext"])

    return app, opened, disconnects


@contextmanager
def raw(server: Server) -> Iterator[socket.socket]:
    with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as sock:
        yield sock


def upgrade_request(path: str = "/dev", **headers: str) -> bytes:
    fields = {
        "Host": "127.0.0.1",
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Key": KEY,
        "Sec-WebSocket-Version": "13",
    }
    fields.update({name.replace("_", "-"): value for name, value in headers.items()})
    lines = [f"GET {path} HTTP/1.1", *(f"{k}: {v}" for k, v in fields.items() if v)]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def read_head(sock: socket.socket) -> tuple[int, str]:
    """The status code and the whole response read until the server closes or 2 s pass."""
    data = b""
    sock.settimeout(TIMEOUT)
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    text = data.decode("latin-1")
    return int(text.split(" ", 2)[1]), text


def masked_text_frame(text: str) -> bytes:
    payload = text.encode()
    mask = os.urandom(4)
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    assert len(payload) < 126
    return struct.pack("!BB", 0x81, 0x80 | len(payload)) + mask + body


def test_bad_upgrade_requests_are_refused_before_connect() -> None:
    """A missing key or a wrong version never reaches `$connect` (RFC 6455 4.2.1)."""
    connects: list[str] = []
    with run_gateway(echo_app(connects)) as server:
        with raw(server) as sock:
            sock.sendall(upgrade_request(Sec_WebSocket_Key="short"))
            status, text = read_head(sock)
            assert status == 400
            assert "Sec-WebSocket-Key" in text
        with raw(server) as sock:
            sock.sendall(upgrade_request(Sec_WebSocket_Version="8"))
            status, text = read_head(sock)
            assert status == 426
            assert "Sec-WebSocket-Version: 13" in text
        with raw(server) as sock:
            sock.sendall(upgrade_request(Connection="keep-alive"))
            assert read_head(sock)[0] == 400
        with raw(server) as sock:
            sock.sendall(upgrade_request().replace(b"HTTP/1.1", b"HTTP/1.0", 1))
            assert read_head(sock)[0] == 400
        assert connects == []
        with ws_connect(server.url) as ws:  # everyone else is still served
            ws.send("still here")
            assert recv(ws) == "still here"
        assert connects == ["connect"]


def test_oversized_and_malformed_heads_get_an_http_error() -> None:
    """A head over 16 KB or a garbled request line is answered with a 4xx, not a hang."""
    with run_gateway(echo_app([])) as server:
        with raw(server) as sock:
            sock.sendall(upgrade_request(X_Padding="a" * 20_000))
            assert 400 <= read_head(sock)[0] < 500
        with raw(server) as sock:
            sock.sendall(b"NONSENSE\r\n\r\n")
            assert read_head(sock)[0] == 400
        with ws_connect(server.url) as ws:
            ws.send("ok")
            assert recv(ws) == "ok"


def test_a_head_that_never_ends_is_dropped(monkeypatch: pytest.MonkeyPatch) -> None:
    """A client that sends half a request head is disconnected after HEAD_TIMEOUT."""
    monkeypatch.setattr(front, "HEAD_TIMEOUT", 0.3)
    with run_gateway(echo_app([])) as server, raw(server) as sock:
        sock.sendall(b"GET /dev HTTP/1.1\r\nHost: x\r\n")
        started = time.monotonic()
        sock.settimeout(TIMEOUT)
        assert sock.recv(1024) == b""  # closed by the server
        assert time.monotonic() - started < TIMEOUT


def test_a_frame_sent_with_the_upgrade_request_is_handled_after_connect() -> None:
    """Bytes that arrive with the head wait for `$connect`, then reach the route."""
    connects: list[str] = []
    with run_gateway(echo_app(connects)) as server, raw(server) as sock:
        sock.sendall(upgrade_request() + masked_text_frame("early"))
        status, text = read_head(sock)
        assert status == 101
        rest = text.split("\r\n\r\n", 1)[1].encode("latin-1")
        while len(rest) < 2 + len("early"):
            rest += sock.recv(1024)
        assert rest[0] == 0x81 and rest[2:7] == b"early"
        assert connects == ["connect"]


def test_fragmented_messages_are_reassembled_and_limited() -> None:
    """A message in several frames is one message; over the limit in total, 1009."""
    received: list[str] = []
    app = App(name="fragments")

    @app.default
    def default(event: dict[str, str], context: object) -> None:
        received.append(event["body"])

    with run_gateway(app, limits=Limits(max_message_bytes=1000)) as server:
        with ws_connect(server.url) as ws:
            ws.send(iter(["hel", "lo ", "world"]))
            ws.send("after")
            deadline = time.monotonic() + TIMEOUT
            while len(received) < 2 and time.monotonic() < deadline:
                time.sleep(0.01)
            assert sorted(received) == ["after", "hello world"]
        with ws_connect(server.url) as ws:
            with pytest.raises(ConnectionClosed) as closed:
                # The close may come while the client is still sending the fragments.
                ws.send(iter(["x" * 600, "y" * 600]))
                recv(ws)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009


def test_pings_are_answered() -> None:
    """A client's ping gets its pong (API Gateway answers pings too)."""
    with run_gateway(echo_app([])) as server, ws_connect(server.url) as ws:
        assert ws.ping(b"are you there").wait(TIMEOUT)


def test_an_upgrade_after_an_http_request_on_the_same_connection_is_refused() -> None:
    """Only a connection's first request can become a WebSocket; later ones get a 400."""
    with run_gateway(echo_app([])) as server, raw(server) as sock:
        sock.sendall(b"GET /dev/@connections HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        status, text = read_head(sock)
        assert status == 200
        length = int(
            next(
                line.split(":")[1]
                for line in text.split("\r\n")
                if line.lower().startswith("content-length")
            )
        )
        body = text.split("\r\n\r\n", 1)[1].encode("latin-1")
        while len(body) < length:
            body += sock.recv(1024)
        assert json.loads(body) == {"connections": [], "count": 0}
        sock.sendall(upgrade_request())
        status, text = read_head(sock)
        assert status == 400
        assert "new connection" in text


def test_many_clients_connecting_at_once_are_all_served(tmp_path: Path) -> None:
    """Fifty concurrent handshakes through `$connect` and the store: all get their echo."""
    connects: list[str] = []
    errors: list[BaseException] = []
    with run_gateway(echo_app(connects), store=f"sqlite:///{tmp_path / 'table.db'}") as server:

        def client(n: int) -> None:
            try:
                with ws_connect(server.url) as ws:
                    ws.send(f"hello {n}")
                    assert recv(ws) == f"hello {n}"
            except BaseException as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=client, args=(n,)) for n in range(50)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(TIMEOUT * 2)
    assert errors == []
    assert len(connects) == 50


class FlakyStore(MemoryStore):
    """A store whose first write fails, as a full disk or a lost database would."""

    def __init__(self) -> None:
        super().__init__()
        self.failures = 1

    async def add_connection(self, record: ConnectionRecord) -> None:
        if self.failures:
            self.failures -= 1
            raise StoreError("disk full")
        await super().add_connection(record)


def test_a_store_failure_refuses_that_connection_with_500_and_serves_the_next() -> None:
    """If the record cannot be written, the handshake gets 500; nothing stays half-open."""
    connects: list[str] = []
    with run_gateway(echo_app(connects), store=FlakyStore()) as server:
        with pytest.raises(InvalidStatus) as refused:
            ws_connect(server.url).close()
        assert refused.value.response.status_code == 500
        with ws_connect(server.url) as ws:
            ws.send("after")
            assert recv(ws) == "after"
            assert len(server.gateway.live) == 1  # the refused one left nothing behind


def test_a_client_that_stops_reading_is_dropped_and_the_rest_served() -> None:
    """Sends to a client that never reads wait for it (back-pressure); past `max_send_wait`
    it is dropped (with `$disconnect`), instead of holding senders and memory for ever."""
    app, opened, disconnects = recording_app("flood")

    @app.route("flood")
    async def flood(event: dict[str, dict[str, str]], context: object) -> None:
        delivered = 0
        for _ in range(200):
            try:
                await connections.send(opened[0], "x" * 100_000)
                delivered += 1
            except GoneError:
                break
        await connections.send(event["requestContext"]["connectionId"], f"sent {delivered}")

    limits = Limits(max_send_buffer_bytes=1024 * 1024, max_send_wait=0.5)
    with run_gateway(app, limits=limits) as server, raw(server) as stalled:
        stalled.sendall(upgrade_request())
        assert read_head(stalled)[0] == 101  # and never reads again
        with ws_connect(server.url) as ws:
            ws.send(json.dumps({"action": "flood"}))
            sent = int(str(recv(ws)).split()[1])
            assert 0 < sent < 200
            deadline = time.monotonic() + TIMEOUT
            while not disconnects and time.monotonic() < deadline:
                time.sleep(0.01)
            assert disconnects[0]["connectionId"] == opened[0]
            assert disconnects[0]["disconnectStatusCode"] == 1006
            assert "not reading" in str(disconnects[0]["disconnectReason"])
            ws.send(json.dumps({"action": "flood"}))  # the flooder itself is fine
            assert recv(ws) == "sent 0"


@pytest.mark.parametrize("kind", ["async", "sync"])
def test_a_burst_bigger_than_the_send_buffer_reaches_a_reading_client(kind: str) -> None:
    """A handler that sends faster than the network carries waits for the client to read
    (back-pressure), so a client that reads gets it all, in order, and is never dropped."""
    app, opened, disconnects = recording_app("burst")
    count, size = 300, 20_000  # 6 MB: past the 1 MiB send buffer limit below

    if kind == "async":

        @app.route("burst")
        async def burst(event: Any, context: object) -> None:
            for n in range(count):
                await connections.send(event.connection_id, f"{n:05d}" + "x" * size)

    else:

        @app.route("burst")
        def burst_sync(event: Any, context: object) -> None:
            for n in range(count):
                connections.send(event.connection_id, f"{n:05d}" + "x" * size)

    limits = Limits(max_send_buffer_bytes=1024 * 1024)
    with run_gateway(app, limits=limits) as server, ws_connect(server.url) as ws:
        ws.send(json.dumps({"action": "burst"}))
        time.sleep(0.5)  # not reading yet: the socket fills and the handler must wait
        got = [str(recv(ws))[:5] for _ in range(count)]
        assert got == [f"{n:05d}" for n in range(count)]
        assert not disconnects


def test_a_client_that_vanishes_is_forgotten_and_disconnect_runs() -> None:
    """A TCP connection dropped without a close frame: 1006 to `$disconnect`, store clean."""
    app, opened, disconnects = recording_app("vanish")

    with run_gateway(app) as server:
        with raw(server) as sock:
            sock.sendall(upgrade_request())
            assert read_head(sock)[0] == 101
        deadline = time.monotonic() + TIMEOUT
        while not disconnects and time.monotonic() < deadline:
            time.sleep(0.01)
        assert disconnects and disconnects[0]["connectionId"] == opened[0]
        assert disconnects[0]["disconnectStatusCode"] == 1006
        assert server.gateway.live == {}
        future = asyncio.run_coroutine_threadsafe(
            server.gateway.store.connection_ids(),
            server.gateway.loop,
        )
        assert future.result(TIMEOUT) == []


def test_a_close_the_gateway_starts_ends_even_if_the_client_stopped_reading() -> None:
    """DeleteConnection on a client that reads nothing: dropped after the close timeout."""
    app, opened, disconnects = recording_app("stalled")

    with run_gateway(app) as server, raw(server) as stalled:
        stalled.sendall(upgrade_request())
        assert read_head(stalled)[0] == 101
        stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        send = asyncio.run_coroutine_threadsafe(
            _fill_then_delete(server, opened[0]),
            server.gateway.loop,
        )
        send.result(TIMEOUT)
        deadline = time.monotonic() + TIMEOUT
        while not disconnects and time.monotonic() < deadline:
            time.sleep(0.05)
        assert disconnects, "the close never finished"
        assert disconnects[0]["disconnectStatusCode"] == 1000


async def _fill_then_delete(server: Server, connection_id: str) -> None:
    for _ in range(38):  # 3.8 MB: more than the socket buffers take, under the 4 MiB limit
        await server.gateway.delivery.send(connection_id, "x" * 100_000)
    await server.gateway.delivery.disconnect(connection_id)


def test_browser_style_upgrade_headers_open_a_connection() -> None:
    """Firefox's `Connection: keep-alive, Upgrade` and odd extra headers are fine: one
    `$connect`, a 101, and an echo, with no `$disconnect` for a connection still open."""
    connects: list[str] = []
    with run_gateway(echo_app(connects)) as server, raw(server) as sock:
        request = upgrade_request(
            Connection="keep-alive, Upgrade", Upgrade="websocket", X_Odd="a\tb"
        )
        sock.sendall(request + masked_text_frame("hi firefox"))
        status, text = read_head(sock)
        assert status == 101
        rest = text.split("\r\n\r\n", 1)[1].encode("latin-1")
        while len(rest) < 2 + len("hi firefox"):
            rest += sock.recv(1024)
        assert rest[2:12] == b"hi firefox"
        assert connects == ["connect"]
        assert len(server.gateway.live) == 1


def test_json_nested_too_deep_goes_to_default_like_any_non_json() -> None:
    """A body of 30,000 '[' is not JSON to the router: `$default` gets it, no 1011."""
    with run_gateway(echo_app([])) as server, ws_connect(server.url) as ws:
        ws.send("[" * 30_000)
        assert recv(ws) == "[" * 30_000
        ws.send("still open")
        assert recv(ws) == "still open"


@pytest.mark.parametrize("size", [125, 126, 8192, 8193, 65535, 65536, 128 * 1024])
def test_messages_of_every_length_encoding_arrive_intact(size: int) -> None:
    """Each frame header length form (7-bit, 16-bit, 64-bit) and both write paths."""
    body = ("0123456789" * (size // 10 + 1))[:size]
    whole_frames = Limits(max_frame_bytes=128 * 1024)  # the 64-bit form is over 32 KB
    with run_gateway(echo_app([]), limits=whole_frames) as server, ws_connect(server.url) as ws:
        ws.send(body)
        assert recv(ws) == body


def test_a_big_broadcast_arrives_intact_everywhere() -> None:
    """A fan-out of a message over 8 KB (framed once, written to each) reaches everyone."""
    app = App(name="big")

    @app.default
    async def default(event: dict[str, str], context: object) -> None:
        await connections.broadcast(event["body"])

    body = "abcdefghij" * 10_000  # 100 KB: the 64-bit length form
    with (
        run_gateway(app) as server,
        ws_connect(server.url) as first,
        ws_connect(server.url) as second,
        ws_connect(server.url) as third,
    ):
        first.send(iter([body[i : i + 25_000] for i in range(0, len(body), 25_000)]))
        for ws in (first, second, third):
            assert recv(ws) == body


def test_a_tls_client_on_the_plain_port_is_closed_at_once() -> None:
    """wss:// (or https://) to this plain-text port: the TLS handshake fails at once, not
    after the 10 s request-head timeout, so `wsgate connect` and browsers say so quickly."""
    import socket
    import ssl
    import time

    with run_gateway(App()) as server:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        started = time.monotonic()
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as raw:
            with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
                context.wrap_socket(raw, server_hostname="localhost")
        assert time.monotonic() - started < 2
