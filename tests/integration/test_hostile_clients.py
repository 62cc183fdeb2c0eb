"""Clients that break the rules on purpose, driven byte by byte (tests/raw_client.py).

A running gateway must close them as API Gateway would (docs/compatibility.md §8 and
§10.3) without running a handler for what it refused, and without letting them take its
memory: an oversized frame is not read, pongs a client never reads and messages parked in
fragments count against budgets, and frames after a close are not dispatched.
"""

from __future__ import annotations

import gc
import queue
import socket
import threading
import time
import tracemalloc
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import pytest

from tests.conftest import TIMEOUT, run_gateway
from tests.raw_client import (
    BINARY,
    CLOSE,
    CONTINUATION,
    PING,
    PONG,
    TEXT,
    Frame,
    RawClient,
    close_payload,
    frame_bytes,
)
from wsgate import App, Limits, connections
from wsgate.server.connection import LiveConnection
from wsgate.server.runner import Server


class Calls:
    """What the handlers saw, across threads: message bodies and `$disconnect` codes."""

    def __init__(self) -> None:
        self.bodies: queue.Queue[str] = queue.Queue()
        self.disconnects: queue.Queue[int] = queue.Queue()

    def app(self) -> App:
        app = App(name="hostile", binary="base64")

        @app.default
        async def default(event: dict[str, Any], context: object) -> None:
            self.bodies.put(event["body"])

        @app.on_disconnect
        async def disconnect(event: dict[str, Any], context: object) -> None:
            self.disconnects.put(event["requestContext"]["disconnectStatusCode"])

        return app

    def disconnect_code(self) -> int:
        return self.disconnects.get(timeout=TIMEOUT)

    def no_message(self, within: float = 0.3) -> bool:
        """No handler got a message within `within` seconds."""
        try:
            body = self.bodies.get(timeout=within)
        except queue.Empty:
            return True
        print(f"a handler got {len(body)} characters")
        return False


@contextmanager
def gateway(calls: Calls, **limits: Any) -> Iterator[Server]:
    with run_gateway(calls.app(), limits=Limits(**limits)) as server:
        yield server


def send_ignoring_close(client: RawClient, data: bytes | memoryview) -> threading.Thread:
    """Send `data` on a thread (the server may stop reading it); errors once it closes
    are expected."""

    def send() -> None:
        try:
            client.send_raw(data)
        except OSError:
            pass

    thread = threading.Thread(target=send, daemon=True)
    thread.start()
    return thread


# -- frames over the limit (docs/compatibility.md §8) -------------------------------------


@pytest.mark.parametrize("size", [32 * 1024 + 1, 1024 * 1024, 4 * 1024 * 1024])
def test_a_frame_over_the_limit_closes_1009_and_reaches_no_handler(size: int) -> None:
    """API Gateway never delivers a message over its quota: the whole frame arrives, and
    still no handler runs."""
    calls = Calls()
    with gateway(calls) as server, RawClient.connect(server.url) as client:
        sender = send_ignoring_close(client, frame_bytes(TEXT, b"x" * size, mask=bytes(4)))
        assert client.recv_close_code() == 1009
        sender.join(TIMEOUT)
        assert calls.disconnect_code() == 1009
        assert calls.no_message()


def test_a_4_mb_frame_is_not_buffered() -> None:
    """The gateway stops reading at the header of an oversized frame: its memory does not
    grow by the frame's size."""
    calls = Calls()
    frame = frame_bytes(TEXT, b"x" * (4 * 1024 * 1024), mask=bytes(4))
    with gateway(calls) as server, RawClient.connect(server.url) as client:
        tracemalloc.start()
        try:
            sender = send_ignoring_close(client, memoryview(frame))
            assert client.recv_close_code() == 1009
            sender.join(TIMEOUT)
            assert calls.disconnect_code() == 1009
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert peak < 1024 * 1024, f"{peak} bytes allocated while refusing a 4 MB frame"


# -- floods: pongs never read, empty continuations, messages parked in fragments ---------


def small_receive_window(client: RawClient) -> None:
    """Shrink the client's receive buffer, so what it does not read piles up on the server."""
    client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)


def test_a_client_that_sends_pings_and_never_reads_the_pongs_is_dropped() -> None:
    """Pongs fill the send buffer like any write: past `max_send_buffer_bytes` the client
    is dropped as a slow consumer (1006), instead of the server growing for ever."""
    calls = Calls()
    pings = b"".join(frame_bytes(PING, b"p" * 125) for _ in range(1000))
    with gateway(calls, max_send_buffer_bytes=256 * 1024) as server:
        with RawClient.connect(server.url) as client:
            deadline = time.monotonic() + 10 * TIMEOUT
            sent = 0
            with pytest.raises(OSError):  # reset by the server once it drops the client
                while time.monotonic() < deadline and sent < 64 * 1024 * 1024:
                    client.send_raw(pings)
                    sent += len(pings)
            assert calls.disconnect_code() == 1006
        assert not server.gateway.live


def test_a_flood_of_empty_continuation_frames_closes_with_1009() -> None:
    """One message may come in at most `max_message_fragments` frames."""
    calls = Calls()
    with gateway(calls, max_message_fragments=100) as server:
        with RawClient.connect(server.url) as client:
            flood = frame_bytes(TEXT, b"x", fin=False) + b"".join(
                frame_bytes(CONTINUATION, b"", fin=False) for _ in range(5000)
            )
            send_ignoring_close(client, flood)
            assert client.recv_close_code() == 1009
        assert calls.disconnect_code() == 1009
        assert calls.no_message()


def test_messages_parked_in_fragments_are_held_to_a_total_budget() -> None:
    """Connections that each park part of a message share one budget: the frame that would
    pass it closes its connection with 1008; the others finish their messages."""
    calls = Calls()
    fragment = b"ab" * 512  # 1 KB per frame
    with gateway(calls, max_total_unfinished_message_bytes=150 * 1024) as server:
        with RawClient.connect(server.url) as first, RawClient.connect(server.url) as second:
            first.send(TEXT, fragment, fin=False)
            for _ in range(99):
                first.send(CONTINUATION, fragment, fin=False)  # 100 KB parked
            first.send(PING, b"sync")
            assert first.recv().opcode == PONG  # all read by now
            second.send(TEXT, fragment, fin=False)
            for _ in range(60):
                second.send(CONTINUATION, fragment, fin=False)  # passes 150 KB
            assert second.recv_close_code() == 1008
            assert calls.disconnect_code() == 1008
            first.send(CONTINUATION, b"!", fin=True)
            assert calls.bodies.get(timeout=TIMEOUT) == "ab" * 512 * 100 + "!"
            assert unfinished_bytes(server) == 0


def unfinished_bytes(server: Server) -> int:
    """What the gateway counts as held in unfinished messages, all connections."""
    return server.gateway.buffers.unfinished


# -- many slow clients: one budget for all they leave unread (docs/compatibility.md §8) ----


def test_slow_clients_together_are_held_to_the_total_send_budget() -> None:
    """Each slow client is within its own limit; together they pass the gateway's total,
    and those holding the most are dropped (1006). The rest of the gateway keeps going,
    and nothing of the dropped ones stays in its structures."""
    calls = Calls()
    app = calls.app()

    @app.route("flood")
    async def flood(event: dict[str, Any], context: object) -> None:
        sender = event["requestContext"]["connectionId"]
        for _ in range(400):  # 12.5 MB to each client: the kernel's buffers take some
            await connections.broadcast("x" * 32 * 1024, exclude=[sender])
        await connections.send(sender, "done")

    limits = Limits(max_send_buffer_bytes=64 * 1024 * 1024, max_total_send_buffer_bytes=1 << 20)
    with run_gateway(app, limits=limits) as server, ExitStack() as stack:
        slow = [stack.enter_context(RawClient.connect(server.url)) for _ in range(4)]
        for client in slow:
            small_receive_window(client)
        fast = stack.enter_context(RawClient.connect(server.url))
        fast.send_text('{"action": "flood"}')
        assert fast.recv(timeout=10 * TIMEOUT) == Frame(TEXT, b"done", True)
        assert sorted(calls.disconnect_code() for _ in slow) == [1006] * 4
        gateway = server.gateway
        assert len(gateway.live) == 1
        buffers = gateway.buffers
        assert buffers.backed_up == {} and buffers.waiting_bytes == 0
        gc.collect()
        kept = [o for o in gc.get_objects() if type(o) is LiveConnection]
        assert [conn for conn in kept if conn.gateway is gateway] == list(gateway.live.values())


# -- protocol details (docs/compatibility.md §10.3) ----------------------------------------


def test_data_after_the_clients_close_frame_reaches_no_handler() -> None:
    """Once the client's close frame is in, what follows it is not a message (RFC 6455
    section 5.5.1)."""
    calls = Calls()
    with gateway(calls) as server, RawClient.connect(server.url) as client:
        client.send_raw(
            frame_bytes(CLOSE, close_payload(1000, "bye"))
            + frame_bytes(TEXT, b"after the close")
            + frame_bytes(BINARY, b"\x00after")
        )
        assert client.recv_close_code() == 1000
        assert calls.disconnect_code() == 1000
        assert calls.no_message()


@pytest.mark.parametrize("rsv", [1, 2, 4])
@pytest.mark.parametrize("fragmented", [False, True])
def test_a_frame_with_rsv_bits_closes_with_1002(rsv: int, fragmented: bool) -> None:
    """No extension is negotiated, so every RSV bit must be 0 (RFC 6455 section 5.2)."""
    calls = Calls()
    with gateway(calls) as server, RawClient.connect(server.url) as client:
        if fragmented:
            client.send(TEXT, b"he", fin=False)
            client.send(CONTINUATION, b"llo", rsv=rsv)
        else:
            client.send(TEXT, b"hello", rsv=rsv)
        assert client.recv_close_code() == 1002
        assert calls.disconnect_code() == 1002
        assert calls.no_message()


@pytest.mark.parametrize("code", [1000, 1001, 1011, 1014, 3000, 4999])
def test_a_valid_close_code_is_echoed(code: int) -> None:
    calls = Calls()
    with gateway(calls) as server, RawClient.connect(server.url) as client:
        client.send(CLOSE, close_payload(code, "bye"))
        assert client.recv_close_code() == code
        assert calls.disconnect_code() == code


@pytest.mark.parametrize("code", [0, 1004, 1005, 1006, 1015, 2999, 5000, 65535])
def test_a_close_code_a_client_may_not_send_is_answered_1002(code: int) -> None:
    """1005, 1006 and 1015 are never sent on the wire; reserved and out-of-range codes are
    a protocol error."""
    calls = Calls()
    with gateway(calls) as server, RawClient.connect(server.url) as client:
        client.send(CLOSE, close_payload(code))
        assert client.recv_close_code() == 1002
        assert calls.disconnect_code() == 1002


def test_a_close_frame_without_a_code_is_answered_without_one() -> None:
    calls = Calls()
    with gateway(calls) as server, RawClient.connect(server.url) as client:
        client.send(CLOSE)
        frame = client.recv()
        assert frame is not None and frame.opcode == CLOSE and frame.payload == b""
        assert calls.disconnect_code() == 1005
