"""Clients that break the rules on purpose, driven byte by byte (tests/raw_client.py).

A running gateway must close them as API Gateway would (docs/compatibility.md §8 and
§10.3) without running a handler for what it refused, and without letting them take its
memory: an oversized frame is not read, pongs a client never reads and messages parked in
fragments count against budgets, and frames after a close are not dispatched.
"""

from __future__ import annotations

import queue
import threading
import tracemalloc
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from tests.conftest import TIMEOUT, run_gateway
from tests.raw_client import (
    TEXT,
    RawClient,
    frame_bytes,
)
from wsgate import App, Limits
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
