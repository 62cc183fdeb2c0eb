"""The benchmark's app on python-socketio (ASGI), served by uvicorn.

Written as socket.io's users write it: one event per action, a room per topic, and
`emit(..., room=topic, skip_sid=sid)` to reach the others in it. Clients connect to
`/socket.io/?EIO=4&transport=websocket`; each event's data is the benchmark's JSON body,
which socket.io decodes into a dict and encodes back the same (compact separators).
"""

from __future__ import annotations

import argparse
from typing import Any

import socketio
import uvicorn

sio = socketio.AsyncServer(async_mode="asgi")
app = socketio.ASGIApp(sio)


@sio.on("echo")
async def echo(sid: str, data: dict[str, Any]) -> None:
    await sio.emit("echo", data, to=sid)


@sio.on("subscribe")
async def subscribe(sid: str, data: dict[str, Any]) -> None:
    await sio.enter_room(sid, data["topic"])
    await sio.emit("subscribed", "ok", to=sid)


@sio.on("publish")
async def publish(sid: str, data: dict[str, Any]) -> None:
    await sio.emit("publish", data, room=data["topic"], skip_sid=sid)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    options = parser.parse_args()
    uvicorn.run(app, host="127.0.0.1", port=options.port, log_level="warning")
