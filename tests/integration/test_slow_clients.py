"""Clients that send their request heads slowly, or never finish them (slowloris).

Every request head of a connection must arrive within `front.HEAD_TIMEOUT`: the first one,
which the front door reads, and each later one on a keep-alive connection, which aiohttp
reads. And only `front.MAX_UNFINISHED_HEADS` connections may be sending a first head at
once: past it, new connections are closed at once, so slow senders cannot take every file
descriptor the gateway has.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

import pytest

from tests.conftest import TIMEOUT, recv, run_gateway, ws_connect
from wsgate import App, connections
from wsgate.server import front
from wsgate.server.runner import Server


def echo_app() -> App:
    app = App(name="slow-clients")

    @app.default
    async def default(event: dict[str, dict[str, str]], context: object) -> None:
        await connections.send(event["requestContext"]["connectionId"], event["body"])

    return app


@contextmanager
def raw(server: Server) -> Iterator[socket.socket]:
    with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as sock:
        yield sock


def read_response(sock: socket.socket) -> bytes:
    """One whole HTTP response (head and Content-Length body), keeping the connection."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, "the server closed the connection"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.lower().split(b"\r\n")
    length = int(next(line for line in lines if line.startswith(b"content-length:"))[15:])
    while len(body) < length:
        body += sock.recv(65536)
    return head


def closed_by_server(sock: socket.socket, within: float) -> bool:
    """The server closed (or reset) the connection within `within` seconds."""
    sock.settimeout(within)
    try:
        while sock.recv(65536):
            pass
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True
    return True


@pytest.mark.parametrize(
    ("first", "status"),
    [
        ("GET /dev HTTP/1.1", b" 426 "),  # a plain GET to the WebSocket path
        ("GET /dev/@connections HTTP/1.1", b" 200 "),  # the management API
        ("GET /elsewhere HTTP/1.1", b" 403 "),
    ],
)
def test_a_later_head_sent_one_byte_at_a_time_is_cut_off(
    monkeypatch: pytest.MonkeyPatch, first: str, status: bytes
) -> None:
    """After an answer on a keep-alive connection, the next head has HEAD_TIMEOUT too."""
    monkeypatch.setattr(front, "HEAD_TIMEOUT", 0.5)
    with run_gateway(echo_app()) as server, raw(server) as sock:
        sock.sendall(f"{first}\r\nHost: 127.0.0.1\r\n\r\n".encode())
        assert status in read_response(sock).split(b"\r\n")[0] + b" "
        started = time.monotonic()
        sock.settimeout(TIMEOUT)
        closed = False
        for byte in b"GET /dev HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"x" * 100:
            try:
                sock.sendall(bytes([byte]))
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
            if closed_by_server(sock, 0.05):
                closed = True
                break
        assert closed, "a slow head kept its connection"
        assert time.monotonic() - started < 0.5 + 1.5 * TIMEOUT / 5


def test_connections_past_the_cap_of_unfinished_heads_are_closed_at_once(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Three slow heads fill a cap of three: a fourth connection is closed at once (logged
    once, however many are refused), and a slot that frees serves a WebSocket client."""
    monkeypatch.setattr(front, "MAX_UNFINISHED_HEADS", 3)
    caplog.set_level(logging.WARNING, logger="wsgate.server")
    with run_gateway(echo_app()) as server, ExitStack() as stack:
        slow = [stack.enter_context(raw(server)) for _ in range(3)]
        for sock in slow:
            sock.sendall(b"GET /dev HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        for _ in range(5):
            with raw(server) as refused:
                assert closed_by_server(refused, TIMEOUT / 5)
        refusals = [r for r in caplog.records if "still sending" in r.getMessage()]
        assert len(refusals) == 1, refusals
        slow[0].sendall(b"\r\n")  # a whole head: its slot is free
        assert b" 426 " in read_response(slow[0])
        with ws_connect(server.url) as ws:
            ws.send("through")
            assert recv(ws) == "through"
