"""The benchmark's app on Starlette (FastAPI's WebSocket), served by uvicorn.

Written as Starlette's and FastAPI's users write a chat: one endpoint that reads JSON
messages in a loop, and a connection manager holding the sockets of each topic in a set,
sending to each in turn. `--ws` picks uvicorn's WebSocket implementation ("auto": its
default, websockets; or "wsproto").
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict

import uvicorn
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect


class ConnectionManager:
    """Who is subscribed to which topic."""

    def __init__(self) -> None:
        self.topics: defaultdict[str, set[WebSocket]] = defaultdict(set)

    def subscribe(self, websocket: WebSocket, topic: str) -> None:
        self.topics[topic].add(websocket)

    def forget(self, websocket: WebSocket) -> None:
        for members in self.topics.values():
            members.discard(websocket)

    async def publish(self, topic: str, text: str, sender: WebSocket) -> None:
        for websocket in list(self.topics[topic]):
            if websocket is not sender:
                await websocket.send_text(text)


manager = ConnectionManager()


async def endpoint(websocket: WebSocket) -> None:
    """Echo, subscribe (answered "ok"), and publish to the topic's other subscribers."""
    await websocket.accept()
    try:
        while True:
            text = await websocket.receive_text()
            message = json.loads(text)
            action = message["action"]
            if action == "echo":
                await websocket.send_text(text)
            elif action == "subscribe":
                manager.subscribe(websocket, message["topic"])
                await websocket.send_text("ok")
            elif action == "publish":
                await manager.publish(message["topic"], text, websocket)
    except WebSocketDisconnect:
        pass
    finally:
        manager.forget(websocket)


app = Starlette(routes=[WebSocketRoute("/", endpoint)])


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--ws", default="auto", choices=("auto", "wsproto"))
    options = parser.parse_args()
    uvicorn.run(app, host="127.0.0.1", port=options.port, ws=options.ws, log_level="warning")
