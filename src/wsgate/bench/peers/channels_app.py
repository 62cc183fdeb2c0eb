"""The benchmark's app on Django Channels with its in-memory channel layer, on uvicorn.

Written as Channels' tutorial writes a chat: an AsyncWebsocketConsumer per connection, a
group per topic, and `group_send` of an event each member's consumer handles by sending
the text on. The whole of Django's configuration is here, so the app is one file.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import django
from django.conf import settings

settings.configure(
    DEBUG=False,
    ALLOWED_HOSTS=["127.0.0.1"],
    INSTALLED_APPS=["channels"],
    CHANNEL_LAYERS={"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}},
)
django.setup()

import uvicorn  # noqa: E402 (Channels' modules need Django set up first)
from channels.generic.websocket import AsyncWebsocketConsumer  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import path  # noqa: E402


class BenchConsumer(AsyncWebsocketConsumer):
    """Echo, subscribe (answered "ok"), and publish to the topic's group."""

    async def connect(self) -> None:
        self.topics: set[str] = set()
        await self.accept()

    async def disconnect(self, code: int) -> None:
        for topic in self.topics:
            await self.channel_layer.group_discard(topic, self.channel_name)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if text_data is None:
            return
        message = json.loads(text_data)
        action = message["action"]
        if action == "echo":
            await self.send(text_data=text_data)
        elif action == "subscribe":
            self.topics.add(message["topic"])
            await self.channel_layer.group_add(message["topic"], self.channel_name)
            await self.send(text_data="ok")
        elif action == "publish":
            event = {"type": "topic.message", "text": text_data, "sender": self.channel_name}
            await self.channel_layer.group_send(message["topic"], event)

    async def topic_message(self, event: dict[str, Any]) -> None:
        if event["sender"] != self.channel_name:
            await self.send(text_data=event["text"])


application = ProtocolTypeRouter({"websocket": URLRouter([path("", BenchConsumer.as_asgi())])})


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    options = parser.parse_args()
    # No lifespan: the router serves WebSockets only.
    uvicorn.run(
        application, host="127.0.0.1", port=options.port, lifespan="off", log_level="warning"
    )
