"""The gateway's own CPU per message, without sockets: `python -m wsgate.bench.hotpath`.

Feeds text frames straight into a connection's frame callback, as picows does (a few per
turn of the event loop, which runs their tasks in between), through
the benchmark app's `echo` route (route selection, event, handler, `connections.send`), to
a transport whose `send` does nothing. What it prints is the Python the gateway adds to
each echoed message, free of the system calls and scheduling that make the full
benchmark's figures swing: the figure to watch when changing the hot path. The best of
several rounds is reported, and the machine's noise still shows between runs (compare
with `valgrind --tool=callgrind` for instruction counts).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from typing import Any, cast

from picows import WSMsgType

from wsgate.app import App
from wsgate.bench.apps import app
from wsgate.core.events import ConnectionContext
from wsgate.core.limits import Limits
from wsgate.server.gateway import Gateway, LiveConnection
from wsgate.server.runner import fastest_loop
from wsgate.store.memory import MemoryStore


class _Reading:
    """The asyncio transport under a picows one: never backed up."""

    def pause_reading(self) -> None: ...
    def resume_reading(self) -> None: ...
    def get_write_buffer_size(self) -> int:
        return 0


class SocketlessTransport:
    """What the gateway uses of a picows transport; writes are counted (and kept, if
    asked: tests), disconnects recorded, nothing reaches a socket."""

    is_disconnected = False
    is_close_frame_sent = False
    underlying_transport = _Reading()

    def __init__(self, keep: bool = False) -> None:
        self.sent = 0
        self.frames: list[bytes] | None = [] if keep else None
        self.disconnects: list[bool] = []  # the `graceful` of each disconnect()

    def send(self, kind: WSMsgType, data: bytes) -> None:
        self.sent += 1
        if self.frames is not None:
            self.frames.append(data)

    def disconnect(self, graceful: bool = True) -> None:
        self.disconnects.append(graceful)


@contextlib.asynccontextmanager
async def socketless_gateway(
    served: App, limits: Limits | None = None, keep: bool = False
) -> AsyncIterator[tuple[Gateway, LiveConnection, Any]]:
    """A started gateway holding one connection on a `SocketlessTransport`; stopped after."""
    gateway = Gateway(served, MemoryStore(), limits=limits)
    await gateway.start()
    info = ConnectionContext(
        connection_id="socketless00000=",
        connected_at=time.time_ns() // 1_000_000,
        source_ip="127.0.0.1",
        user_agent=None,
        domain_name="127.0.0.1",
        stage="dev",
        api_id="socketless",
    )
    conn = LiveConnection(gateway, info, gateway.limits.max_concurrent_messages)
    transport = SocketlessTransport(keep)
    conn.on_ws_connected(cast(Any, transport))
    gateway.live[info.connection_id] = conn
    try:
        yield gateway, conn, transport
    finally:
        gateway.live.clear()
        await gateway.stop()


class _Frame:
    """A complete text frame, as picows hands it over."""

    msg_type = WSMsgType.TEXT
    fin = True

    def __init__(self, text: str) -> None:
        self._text = text

    def get_payload_as_utf8_text(self) -> str:
        return self._text


async def measure(messages: int, rounds: int) -> float:
    """Microseconds of CPU per echoed message: the best of `rounds` rounds."""
    frame: Any = _Frame(json.dumps({"action": "echo", "data": "x" * 70}))
    async with socketless_gateway(app) as (gateway, conn, transport):

        async def feed(count: int) -> None:
            # Frames arrive a few at a time, and the loop runs the messages' tasks between.
            for _ in range(count // 8):
                for _ in range(8):
                    conn.on_ws_frame(transport, frame)
                await asyncio.sleep(0)
            while gateway._deadlines:
                await asyncio.sleep(0)

        await feed(1000)  # warm up
        best = float("inf")
        for _ in range(rounds):
            start = time.process_time()
            await feed(messages)
            best = min(best, (time.process_time() - start) / messages)
        assert transport.sent == 1000 // 8 * 8 + rounds * (messages // 8 * 8), "echoes lost"
    return best * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=30_000, help="per round")
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    with asyncio.Runner(loop_factory=fastest_loop()) as runner:  # uvloop, as `wsgate serve`
        micros = runner.run(measure(args.messages, args.rounds))
    print(f"{micros:.2f} us of CPU per echoed message in the gateway (best of {args.rounds})")


if __name__ == "__main__":
    main()
