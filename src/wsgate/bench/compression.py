"""The gateway's CPU per message with permessage-deflate negotiated or not, over sockets:
`python -m wsgate.bench.compression --size 2000`.

Starts `wsgate serve wsgate.bench.apps:app` and drives it with python-websockets clients
(the load generator's picows client offers no extensions), offering permessage-deflate or
not, and reads the gateway process's CPU time (user + system, from /proc, Linux only)
around each phase: an echo (one client, 16 messages in flight) and a fan-out (one
publisher, 50 subscribers). Phases alternate, plain then compressed, twice; the lower
of each pair is printed. The clients run in this process, so they do not count; the
figures still move with the machine's load, so compare the two of one run. /proc counts
in ticks of 10 ms: 2.5 us a message for the echo, 33 us a message for the fan-out.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable

from websockets.asyncio.client import ClientConnection, connect

ECHOES, IN_FLIGHT = 4000, 16
PUBLISHES, SUBSCRIBERS = 300, 50


def _data(size: int, n: int) -> str:
    """`size` characters of JSON-ish text that differs from message to message."""
    items = (
        f"{{'user': 'u{i % 97}', 'seq': {n * 1000 + i}, 'text': 'hi'}}"
        for i in range(size // 30 + 1)
    )
    return "".join(items)[:size]


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _echo(url: str, size: int, compression: str | None) -> int:
    async with connect(url, compression=compression, max_size=None) as ws:
        received = 0

        async def read() -> None:
            nonlocal received
            while received < ECHOES:
                await ws.recv()
                received += 1

        reader = asyncio.create_task(read())
        for sent in range(ECHOES):
            while sent - received >= IN_FLIGHT:
                await asyncio.sleep(0)
            await ws.send(json.dumps({"action": "echo", "data": _data(size, sent)}))
        await reader
    return ECHOES


async def _fan_out(url: str, size: int, compression: str | None) -> int:
    subscribers: list[ClientConnection] = []
    for _ in range(SUBSCRIBERS):
        ws = await connect(url, compression=compression, max_size=None)
        await ws.send(json.dumps({"action": "subscribe", "topic": "t"}))
        await ws.recv()
        subscribers.append(ws)

    async def drain(ws: ClientConnection) -> None:
        for _ in range(PUBLISHES):
            await ws.recv()

    async with connect(url, compression=compression) as publisher:
        readers = [asyncio.create_task(drain(ws)) for ws in subscribers]
        for n in range(PUBLISHES):
            data = _data(size, n)
            await publisher.send(json.dumps({"action": "publish", "topic": "t", "data": data}))
            if n % 8 == 7:
                await asyncio.sleep(0.001)  # let the gateway keep up, as a paced publisher
        await asyncio.gather(*readers)
    for ws in subscribers:
        await ws.close()
    return PUBLISHES


async def measure(size: int) -> dict[str, float]:
    """Microseconds of the gateway's CPU per message, by phase and mode."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    command = [sys.executable, "-m", "wsgate", "serve", "wsgate.bench.apps:app"]
    options = ["--store", "memory://", "--log-level", "warning", "--no-access-log"]
    server = subprocess.Popen(
        [*command, "--port", str(port), *options],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.1)
        url = f"ws://127.0.0.1:{port}/dev"
        phases: dict[str, Callable[[str, int, str | None], Awaitable[int]]] = {
            "echo": _echo,
            f"fan-out to {SUBSCRIBERS}": _fan_out,
        }
        best: dict[str, float] = {}
        for _ in range(2):
            for name, phase in phases.items():
                for compression in (None, "deflate"):
                    before = _cpu_seconds(server.pid)
                    count = await phase(url, size, compression)
                    await asyncio.sleep(0.2)  # the gateway's last writes and closes
                    micros = (_cpu_seconds(server.pid) - before) / count * 1e6
                    key = f"{name}, {'compressed' if compression else 'plain'}"
                    best[key] = min(best.get(key, float("inf")), micros)
        return best
    finally:
        server.terminate()
        server.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=2000, help="bytes of data a message")
    args = parser.parse_args()
    for key, micros in asyncio.run(measure(args.size)).items():
        print(f"{args.size} B, {key}: {micros:.0f} us of gateway CPU per message")


if __name__ == "__main__":
    main()
