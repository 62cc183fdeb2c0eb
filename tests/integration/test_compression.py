"""permessage-deflate on a running gateway (docs/compatibility.md §10.8), with real clients:
python-websockets (which offers it by default) and hand-made frames after a browser's
offer (tests/raw_client.py)."""

from __future__ import annotations

import base64
import json
import os
import queue
import tracemalloc
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosedError
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory

from tests.conftest import TIMEOUT, management_client, recv, run_gateway, ws_connect
from tests.raw_client import BINARY, CONTINUATION, PING, TEXT, RawClient
from wsgate import App, Limits, connections
from wsgate.server.runner import Server

CHROME_OFFER = "permessage-deflate; client_max_window_bits"
TAIL = b"\x00\x00\xff\xff"
RSV1 = 0b100


class Echo:
    """An app that sends every message back to its sender and keeps what it saw."""

    def __init__(self) -> None:
        self.bodies: queue.Queue[str] = queue.Queue()
        self.disconnects: queue.Queue[int] = queue.Queue()

    def app(self) -> App:
        app = App(name="deflate", binary="base64")

        @app.default
        async def default(event: dict[str, Any], context: object) -> None:
            self.bodies.put(event["body"])
            body = event["body"]
            reply = base64.b64decode(body) if event["isBase64Encoded"] else body
            await connections.send(event.connection_id, reply)

        @app.route("broadcast")
        async def broadcast(event: dict[str, Any], context: object) -> None:
            await connections.broadcast(event.json["data"])

        @app.on_disconnect
        async def disconnect(event: dict[str, Any], context: object) -> None:
            self.disconnects.put(event["requestContext"]["disconnectStatusCode"])

        return app

    def body(self) -> str:
        return self.bodies.get(timeout=TIMEOUT)

    def disconnect_code(self) -> int:
        return self.disconnects.get(timeout=TIMEOUT)

    def no_message(self, within: float = 0.3) -> bool:
        try:
            self.bodies.get(timeout=within)
        except queue.Empty:
            return True
        return False


@contextmanager
def gateway(echo: Echo, **options: Any) -> Iterator[Server]:
    with run_gateway(echo.app(), **options) as server:
        yield server


def deflated(data: bytes, compressor: Any = None) -> bytes:
    """A message's payload as a client compresses it (RFC 7692 section 7.2.1)."""
    compressor = compressor or zlib.compressobj(wbits=-12)
    return (compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH))[:-4]


def text_of(size: int, seed: str = "") -> str:
    """JSON-ish text that compresses about as well as real messages do."""
    line = '{"user": "u%d", "text": "message number %d from %s"}\n'
    text = "".join(line % (n % 97, n, seed) for n in range(size // 40 + 1))
    return text[:size]


# -- negotiation ------------------------------------------------------------------------


def test_the_websockets_client_negotiates_it_and_every_size_round_trips() -> None:
    """Its default offer is accepted; messages up to the 32 KB frame limit in one frame,
    and up to the 128 KB message limit in fragments, come back whole."""
    echo = Echo()
    with gateway(echo) as server, ws_connect(server.url) as ws:
        assert ws.response is not None
        assert ws.response.headers["Sec-WebSocket-Extensions"] == (
            "permessage-deflate; server_max_window_bits=12; client_max_window_bits=12"
        )
        for size in (5, 1023, 1024, 9000, 32 * 1024):
            text = text_of(size, "ws")
            ws.send(text)
            assert recv(ws) == text
            assert echo.body() == text
        text = text_of(128 * 1024, "fragments")
        ws.send(iter([text[n : n + 32 * 1024] for n in range(0, len(text), 32 * 1024)]))
        assert recv(ws) == text


def test_the_frame_limit_applies_to_what_a_frame_inflates_to() -> None:
    """As on a connection without compression: a 33 KB message in one frame is refused
    with 1009, though it travels in far fewer bytes, so what passes here passes a
    gateway that counts uncompressed frames."""
    echo = Echo()
    with gateway(echo) as server, ws_connect(server.url) as ws:
        ws.send("x" * (32 * 1024 + 1))
        with pytest.raises(ConnectionClosedError) as closed:
            recv(ws)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
        assert echo.disconnect_code() == 1009
        assert echo.no_message()


def test_a_browser_offer_gets_compressed_frames_back_from_1_kb() -> None:
    """Chrome's offer; a client message compressed by hand reaches the handler; the echo of
    1 KB or more comes back with RSV1 and inflates; a shorter one comes back plain."""
    echo = Echo()
    with gateway(echo) as server, RawClient.connect(server.url, extensions=CHROME_OFFER) as client:
        assert client.extensions == (
            "permessage-deflate; server_max_window_bits=12; client_max_window_bits=12"
        )
        compressor = zlib.compressobj(wbits=-12)
        decompressor = zlib.decompressobj(wbits=-15)
        for size in (100, 1024, 5000, 30_000, 5000):  # the repeat exercises the contexts
            text = text_of(size, "chrome")
            client.send(TEXT, deflated(text.encode(), compressor), rsv=RSV1)
            assert echo.body() == text
            frame = client.recv()
            assert frame is not None and frame.opcode == TEXT
            assert frame.rsv1 == (size >= 1024)
            received = (
                decompressor.decompress(frame.payload + TAIL) if frame.rsv1 else frame.payload
            )
            assert received.decode() == text


def test_without_an_offer_or_with_compression_off_nothing_is_negotiated() -> None:
    """`serve(compression=False)` (`--no-compression`) answers the offer without the
    extension; RSV1 is then a protocol error, as for a client that offered nothing."""
    echo = Echo()
    with gateway(echo, compression=False) as server:
        with ws_connect(server.url) as ws:
            assert ws.response is not None
            assert "Sec-WebSocket-Extensions" not in ws.response.headers
            ws.send(text_of(5000))
            assert recv(ws) == text_of(5000)
        with RawClient.connect(server.url, extensions=CHROME_OFFER) as client:
            assert client.extensions is None
            client.send(TEXT, deflated(b"hello"), rsv=RSV1)
            assert client.recv_close_code() == 1002
    with gateway(echo) as server, RawClient.connect(server.url) as client:
        assert client.extensions is None
        client.send(TEXT, b"x" * 2000)
        frame = client.recv()
        assert frame is not None and not frame.rsv1 and frame.payload == b"x" * 2000


def test_no_context_takeover_both_ways() -> None:
    """Each message stands alone both ways: the client compresses each with a fresh
    context, and each echo inflates with a fresh one."""
    offer = "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
    echo = Echo()
    with gateway(echo) as server, RawClient.connect(server.url, extensions=offer) as client:
        assert client.extensions == f"{offer}; server_max_window_bits=12"
        text = text_of(4000, "alone")
        for _ in range(3):
            client.send(TEXT, deflated(text.encode(), zlib.compressobj(wbits=-15)), rsv=RSV1)
            frame = client.recv()
            assert frame is not None and frame.rsv1
            fresh = zlib.decompressobj(wbits=-15)
            assert fresh.decompress(frame.payload + TAIL).decode() == text


def test_with_context_takeover_a_repeat_costs_little() -> None:
    echo = Echo()
    with gateway(echo) as server, RawClient.connect(server.url, extensions=CHROME_OFFER) as client:
        decompressor = zlib.decompressobj(wbits=-15)
        text = os.urandom(1500).hex()  # compresses to about half alone
        sizes = []
        for _ in range(2):
            client.send_text(text)
            frame = client.recv()
            assert frame is not None and frame.rsv1
            assert decompressor.decompress(frame.payload + TAIL).decode() == text
            sizes.append(len(frame.payload))
        assert sizes[1] < sizes[0] // 5


# -- inbound rules ----------------------------------------------------------------------


def test_a_compressed_message_in_fragments_and_a_binary_one() -> None:
    echo = Echo()
    with gateway(echo) as server, RawClient.connect(server.url, extensions=CHROME_OFFER) as client:
        payload = deflated(text_of(3000, "parts").encode())
        client.send(TEXT, payload[:100], fin=False, rsv=RSV1)
        client.send(CONTINUATION, payload[100:200], fin=False)
        client.send(CONTINUATION, payload[200:])
        assert echo.body() == text_of(3000, "parts")
        data = bytes(range(256)) * 10
        client.send(BINARY, deflated(data), rsv=RSV1)
        assert base64.b64decode(echo.body()) == data


@pytest.mark.parametrize("where", ["continuation", "ping"])
def test_rsv1_on_a_continuation_or_a_control_frame_closes_1002(where: str) -> None:
    echo = Echo()
    with gateway(echo) as server, RawClient.connect(server.url, extensions=CHROME_OFFER) as client:
        if where == "continuation":
            client.send(TEXT, deflated(b"hel"), fin=False, rsv=RSV1)
            client.send(CONTINUATION, b"lo", rsv=RSV1)
        else:
            client.send(PING, b"", rsv=RSV1)
        assert client.recv_close_code() == 1002
        assert echo.disconnect_code() == 1002
        assert echo.no_message()


def test_data_that_does_not_inflate_closes_1002() -> None:
    echo = Echo()
    with gateway(echo) as server, RawClient.connect(server.url, extensions=CHROME_OFFER) as client:
        client.send(TEXT, b"\xff" * 40, rsv=RSV1)
        assert client.recv_close_code() == 1002
        assert echo.no_message()


def test_the_message_limit_applies_to_the_inflated_size() -> None:
    """5000 bytes that compress to a few hundred are over a 4096-byte message limit."""
    echo = Echo()
    with gateway(echo, limits=Limits(max_message_bytes=4096)) as server:
        with RawClient.connect(server.url, extensions=CHROME_OFFER) as client:
            client.send(TEXT, deflated(text_of(4096).encode()), rsv=RSV1)
            assert echo.body() == text_of(4096)
            client.send(TEXT, deflated(text_of(5000).encode()), rsv=RSV1)
            assert client.recv_close_code() == 1009
            assert echo.disconnect_code() == 1009


def test_a_zip_bomb_is_refused_without_inflating_it() -> None:
    """30 MB of zeros in a 30 KB frame (under the 32 KB frame limit): closed with 1009,
    no handler runs, and the gateway never holds more than a message's worth for it."""
    bomb = deflated(bytes(30 << 20), zlib.compressobj(wbits=-15))
    assert len(bomb) < 32 * 1024
    echo = Echo()
    with gateway(echo) as server, RawClient.connect(server.url, extensions=CHROME_OFFER) as client:
        tracemalloc.start()
        try:
            client.send(TEXT, bomb, rsv=RSV1)
            assert client.recv_close_code() == 1009
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert peak < 4 << 20, f"{peak} bytes at the peak"
        assert echo.disconnect_code() == 1009
        assert echo.no_message()


# -- fan-out and the management API -----------------------------------------------------


def test_a_broadcast_reaches_compressed_and_plain_clients_alike() -> None:
    """Each receiver gets the message in its own terms (compressed, with or without
    context takeover, or plain), and a compressing client's own messages still inflate
    after it."""
    echo = Echo()
    alone = ClientPerMessageDeflateFactory(
        server_no_context_takeover=True, client_no_context_takeover=True
    )
    with (
        gateway(echo) as server,
        ws_connect(server.url) as kept,
        ws_connect(server.url, extensions=[alone]) as fresh,
        ws_connect(server.url, compression=None) as plain,
    ):
        assert fresh.response is not None
        assert "server_no_context_takeover" in fresh.response.headers["Sec-WebSocket-Extensions"]
        for n in range(3):
            data = text_of(10_000, f"broadcast {n}")
            kept.send(json.dumps({"action": "broadcast", "data": data}))
            for ws in (kept, fresh, plain):
                assert recv(ws) == data
            own = text_of(3000, f"own {n}")
            kept.send(own)
            assert recv(kept) == own


def test_a_broadcast_is_compressed_once_for_its_receivers() -> None:
    """Two browsers receive the same compressed bytes: one deflate for the fan-out."""
    echo = Echo()
    with (
        gateway(echo) as server,
        RawClient.connect(server.url, extensions=CHROME_OFFER) as first,
        RawClient.connect(server.url, extensions=CHROME_OFFER) as second,
    ):
        first.send_text("warm up the first one's context " * 40)
        assert first.recv() is not None
        data = text_of(5000, "once")
        first.send_text(json.dumps({"action": "broadcast", "data": data}))
        frames = [first.recv(), second.recv()]
        assert frames[0] is not None and frames[1] is not None
        assert frames[0].rsv1 and frames[0].payload == frames[1].payload
        assert zlib.decompressobj(wbits=-15).decompress(frames[1].payload + TAIL) == data.encode()


def test_post_to_connection_reaches_a_compressed_client() -> None:
    echo = Echo()
    with gateway(echo) as server, ws_connect(server.url) as ws:
        ws.send("whoami")
        assert recv(ws) == "whoami"
        connection_id = next(iter(server.gateway.live))
        data = text_of(120_000, "management").encode()
        management_client(server).post_to_connection(ConnectionId=connection_id, Data=data)
        assert recv(ws) == data.decode()
