"""Raw picows server on uvloop (when installed): the fastest Python server at hand.

Echo and subscribe answer in the frame callback; a publish is written to every
subscriber's transport in one loop, picows' equivalent of a broadcast.
"""

from __future__ import annotations

import asyncio
import signal
from typing import TYPE_CHECKING, Any

from wsgate.bench import optional
from wsgate.bench.protocol import PUBLISH_PREFIX, SUBSCRIBE_PREFIX, SUBSCRIBED
from wsgate.bench.refs import parse_port

picows: Any = optional.load("picows")
if picows is None:
    raise SystemExit("picows is not installed: pip install 'wsgate[bench]'")

if TYPE_CHECKING:
    WSListener = object
else:
    WSListener = picows.WSListener

TEXT = picows.WSMsgType.TEXT
CLOSE = picows.WSMsgType.CLOSE

#: Transports of everyone connected (the "store"), and of the subscribers.
connected: set[Any] = set()
subscribers: set[Any] = set()


class Handler(WSListener):
    """One connection: routes each text frame by its prefix."""

    def on_ws_connected(self, transport: Any) -> None:
        connected.add(transport)

    def on_ws_frame(self, transport: Any, frame: Any) -> None:
        kind = frame.msg_type
        if kind is TEXT:
            data = frame.get_payload_as_bytes()
            if data.startswith(PUBLISH_PREFIX):
                for subscriber in subscribers:
                    if subscriber is not transport:
                        subscriber.send(TEXT, data)
            elif data.startswith(SUBSCRIBE_PREFIX):
                subscribers.add(transport)
                transport.send(TEXT, SUBSCRIBED)
            else:
                transport.send(TEXT, data)
        elif kind is CLOSE:
            transport.send_close(frame.get_close_code())
            transport.disconnect()

    def on_ws_disconnected(self, transport: Any) -> None:
        connected.discard(transport)
        subscribers.discard(transport)


async def main(port: int) -> None:
    """Serve until SIGTERM/SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    server = await picows.ws_create_server(lambda request: Handler(), "127.0.0.1", port)
    async with server:
        await stop.wait()


if __name__ == "__main__":
    _, factory = optional.loop_factory()
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(main(parse_port(__doc__ or "")))
