"""The gateway's own CPU per message, without sockets: `python -m wsgate.bench.hotpath`.

Feeds text frames straight into a connection's frame callback, as picows does (a few per
turn of the event loop, which runs their tasks in between), through
the benchmark app's `echo` route (route selection, event, handler, `connections.send`), to
a transport whose `send` does nothing. What it prints is the Python the gateway adds to
each echoed message, free of the system calls and scheduling that make the full
benchmark's figures swing: the figure to watch when changing the hot path. The best of
several rounds is reported, and the machine's noise still shows between runs (compare
with `valgrind --tool=callgrind` for instruction counts).

`--compression`: the connection negotiated permessage-deflate (Chrome's offer), the
frames come compressed and the replies of 1 KB or more go out compressed. `--size`: the
bytes of `data` in each message. `--fan-out N`: each message is a `publish` to N other
connections instead of an echo (with `--compression`, all of them negotiated it).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import zlib
from typing import Any

from picows import WSMsgType

from wsgate.bench.apps import app
from wsgate.core.compression import negotiate
from wsgate.server.modes import fastest_loop
from wsgate.server.socketless import socketless_connection, socketless_gateway

#: What Chrome offers.
BROWSER_OFFER = "permessage-deflate; client_max_window_bits"


class _Frame:
    """A complete text frame, as picows hands it over (compressed: RSV1 set)."""

    msg_type = WSMsgType.TEXT
    fin = True
    rsv2 = rsv3 = 0

    def __init__(self, text: str, compressed: bool) -> None:
        self._text = text
        self.rsv1 = int(compressed)
        self._payload = _deflated(text.encode()) if compressed else text.encode()

    def get_payload_as_utf8_text(self) -> str:
        return self._text

    def get_payload_as_bytes(self) -> bytes:
        return self._payload


def _deflated(data: bytes) -> bytes:
    """A message as a browser compresses it (each alone: valid in any context)."""
    compressor = zlib.compressobj(wbits=-12)
    return (compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH))[:-4]


def _data(size: int) -> str:
    """`size` characters of JSON-ish text, compressible as real messages are."""
    words = "".join(
        f'{{"user": "u{n % 97}", "seq": {n}, "text": "hello there"}}' for n in range(size)
    )
    return words.replace('"', "'")[:size]


async def measure(
    messages: int,
    rounds: int,
    *,
    size: int | None = None,
    compression: bool = False,
    fan_out: int = 0,
) -> float:
    """Microseconds of CPU per message (an echo, or a publish to `fan_out` connections):
    the best of `rounds` rounds."""
    deflate = negotiate([BROWSER_OFFER]) if compression else None
    data = "x" * 70 if size is None else _data(size)
    action = {"action": "publish", "topic": "t"} if fan_out else {"action": "echo"}
    frame: Any = _Frame(json.dumps({**action, "data": data}), compression)
    async with socketless_gateway(app, deflate=deflate) as (gateway, conn, transport):
        receivers = []
        for n in range(fan_out):
            receiver = await socketless_connection(gateway, f"receiver{n:08d}=", deflate=deflate)
            await gateway.store.subscribe(f"receiver{n:08d}=", "t")
            receivers.append(receiver[1])

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
        sent = sum(receiver.sent for receiver in receivers) if fan_out else transport.sent
        expected = (1000 // 8 * 8 + rounds * (messages // 8 * 8)) * max(fan_out, 1)
        assert sent == expected, "messages lost"
    return best * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=30_000, help="per round")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--size", type=int, help="bytes of JSON-ish data a message (else 70 x's)")
    parser.add_argument("--compression", action="store_true", help="permessage-deflate")
    parser.add_argument("--fan-out", type=int, default=0, help="publish to N connections")
    args = parser.parse_args()
    with asyncio.Runner(loop_factory=fastest_loop()) as runner:  # uvloop, as `wsgate serve`
        micros = runner.run(
            measure(
                args.messages,
                args.rounds,
                size=args.size,
                compression=args.compression,
                fan_out=args.fan_out,
            )
        )
    what = f"published to {args.fan_out}" if args.fan_out else "echoed"
    print(f"{micros:.2f} us of CPU per {what} message in the gateway (best of {args.rounds})")


if __name__ == "__main__":
    main()
