"""The app `wsgate serve` runs when given no TARGET: the four example apps in one, with
presence; its browser page is `static/demo.html`.

anything that is no action below              -> echoed back to the sender
{"action": "onMessage", "data": X}            -> every connection receives X as JSON
{"action": "subscribe" | "unsubscribe", "topic": T}
{"action": "publish", "topic": T, "data": X}  -> other subscribers get {"topic", "data"}
{"action": "whoAmI"}                          -> your connection id
{"action": "sendMessage", "connectionId": ID, "message": M} -> ID receives M
{"action": "setName", "name": N}              -> {"name": N}: how presence names you
{"action": "who", "topic": T}                 -> {"topic", "members": [{"connectionId", "name"}]}

Presence, the pattern: `connections.subscribers(topic)` says who is in a topic (`who`),
and a subscribe or unsubscribe with `"announce": true` tells the topic's other subscribers
`{"presence": "join" | "leave", "topic", "connectionId", "name"}` (closing the connection
is a leave from each topic it announced itself in); an announced subscribe is answered as
`who` is, so the joiner starts with the list that the notices then keep current. Clients
that do not announce themselves are never announced: plain subscribers see only what is
published.

Names and announced topics are kept in this process, by the node that holds the
connection (the one that runs its routes and its `$disconnect`); a real app keeps them in
its own table. `who` names the connections of other `--workers` or nodes as None.
"""

from __future__ import annotations

import json
from typing import Any

from wsgate.app import App
from wsgate.connection_api import connections
from wsgate.core.events import Event
from wsgate.exceptions import GoneError

app = App(name="wsgate-demo")

#: Connection id -> the name it chose (setName).
_names: dict[str, str] = {}
#: Connection id -> the topics it announced itself in.
_announced: dict[str, set[str]] = {}


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
    if _field(event, "announce") is True:
        _announced.setdefault(event.connection_id, set()).add(topic)
        await _announce("join", topic, event.connection_id)
        await _send_members(event.connection_id, topic)


@app.route("unsubscribe")
async def unsubscribe(event: Event, context: Any) -> None:
    if (topic := await _topic(event)) is None:
        return
    await connections.unsubscribe(event.connection_id, topic)
    if _field(event, "announce") is True:
        _announced.get(event.connection_id, set()).discard(topic)
        await _announce("leave", topic, event.connection_id)


async def _announce(change: str, topic: str, connection_id: str) -> None:
    notice = {
        "presence": change,
        "topic": topic,
        "connectionId": connection_id,
        "name": _names.get(connection_id),
    }
    await connections.publish(topic, json.dumps(notice), exclude=[connection_id])


@app.route("who")
async def who(event: Event, context: Any) -> None:
    if (topic := await _topic(event)) is None:
        return
    await _send_members(event.connection_id, topic)


async def _send_members(connection_id: str, topic: str) -> None:
    members = [
        {"connectionId": member, "name": _names.get(member)}
        for member in sorted(await connections.subscribers(topic))
    ]
    await connections.send(connection_id, json.dumps({"topic": topic, "members": members}))


@app.route("setName")
async def set_name(event: Event, context: Any) -> None:
    name = _field(event, "name")
    if not isinstance(name, str) or not name.strip():
        return await _reply_error(event, "setName needs a non-empty string 'name'")
    _names[event.connection_id] = name.strip()[:40]
    await connections.send(event.connection_id, json.dumps({"name": _names[event.connection_id]}))


@app.on_disconnect
async def disconnect(event: Event, context: Any) -> None:
    for topic in sorted(_announced.pop(event.connection_id, ())):
        await _announce("leave", topic, event.connection_id)
    _names.pop(event.connection_id, None)


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
