"""Raw `websockets` server: echo, subscribe, and fan-out with `websockets.broadcast`.

It runs on asyncio's default loop, as wsgate does, so the two compare like for like.
"""

from __future__ import annotations

import asyncio
import signal

from websockets import ConnectionClosed, broadcast
from websockets.asyncio.server import ServerConnection, serve

from wsgate.bench.protocol import PUBLISH_PREFIX, SUBSCRIBE_PREFIX, SUBSCRIBED
from wsgate.bench.refs import parse_port

_PUBLISH = PUBLISH_PREFIX.decode()
_SUBSCRIBE = SUBSCRIBE_PREFIX.decode()
_SUBSCRIBED = SUBSCRIBED.decode()


async def main(port: int) -> None:
    """Serve until SIGTERM/SIGINT."""
    connected: set[ServerConnection] = set()  # the "store": who is connected
    subscribers: set[ServerConnection] = set()

    async def handler(ws: ServerConnection) -> None:
        connected.add(ws)
        try:
            async for message in ws:
                if not isinstance(message, str):
                    continue
                if message.startswith(_PUBLISH):
                    broadcast(subscribers - {ws} if ws in subscribers else subscribers, message)
                elif message.startswith(_SUBSCRIBE):
                    subscribers.add(ws)
                    await ws.send(_SUBSCRIBED)
                else:
                    await ws.send(message)
        except ConnectionClosed:
            pass
        finally:
            connected.discard(ws)
            subscribers.discard(ws)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with serve(handler, "127.0.0.1", port, compression=None):
        await stop.wait()


if __name__ == "__main__":
    asyncio.run(main(parse_port(__doc__ or "")))
