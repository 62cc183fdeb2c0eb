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
import json
import time
from typing import Any

from picows import WSMsgType

from wsgate.bench.apps import app
from wsgate.server.modes import fastest_loop
from wsgate.server.socketless import socketless_gateway


class _Frame:
    """A complete text frame, as picows hands it over."""

    msg_type = WSMsgType.TEXT
    fin = True
    rsv1 = rsv2 = rsv3 = 0

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
            while gateway.invoker.deadlines:
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
