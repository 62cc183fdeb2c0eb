"""The app `wsgate serve` runs when given no TARGET: the four example apps in one.

anything that is no action below              -> echoed back to the sender
{"action": "onMessage", "data": X}            -> every connection receives X as JSON
{"action": "subscribe" | "unsubscribe", "topic": T}
{"action": "publish", "topic": T, "data": X}  -> other subscribers get {"topic", "data"}
{"action": "whoAmI"}                          -> your connection id
{"action": "sendMessage", "connectionId": ID, "message": M} -> ID receives M
"""

from __future__ import annotations

import json
from typing import Any

from wsgate.app import App
from wsgate.connection_api import connections
from wsgate.core.events import Event
from wsgate.exceptions import GoneError

app = App(name="wsgate-demo")


async def _reply_error(event: Event, message: str) -> None:
    await connections.send(event.connection_id, json.dumps({"error": message}))


def _field(event: Event, name: str) -> Any:
    body = event.json
    return body.get(name) if isinstance(body, dict) else None


async def _topic(event: Event) -> str | None:
    """The message's topic, or None after telling the sender what is wrong."""
    topic = _field(event, "topic")
    if isinstance(topic, str) and topic:
        return topic
    await _reply_error(event, f"{event.route_key} needs a non-empty string 'topic'")
    return None


@app.default
async def echo(event: Event, context: Any) -> None:
    await connections.send(event.connection_id, event["body"])


@app.route("onMessage")
async def on_message(event: Event, context: Any) -> None:
    await connections.broadcast(json.dumps(_field(event, "data")))


@app.route("subscribe")
async def subscribe(event: Event, context: Any) -> None:
    if (topic := await _topic(event)) is None:
        return
    await connections.subscribe(event.connection_id, topic)


@app.route("unsubscribe")
async def unsubscribe(event: Event, context: Any) -> None:
    if (topic := await _topic(event)) is None:
        return
    await connections.unsubscribe(event.connection_id, topic)


@app.route("publish")
async def publish(event: Event, context: Any) -> None:
    if (topic := await _topic(event)) is None:
        return
    payload = json.dumps({"topic": topic, "data": _field(event, "data")})
    await connections.publish(topic, payload, exclude=[event.connection_id])


@app.route("whoAmI")
async def who_am_i(event: Event, context: Any) -> None:
    await connections.send(event.connection_id, event.connection_id)


@app.route("sendMessage")
async def send_message(event: Event, context: Any) -> None:
    target, message = _field(event, "connectionId"), _field(event, "message")
    if not isinstance(target, str) or message is None:
        return await _reply_error(event, "sendMessage needs 'connectionId' and 'message'")
    try:
        await connections.send(target, message)
    except GoneError:
        await _reply_error(event, f"no open connection {target}")
