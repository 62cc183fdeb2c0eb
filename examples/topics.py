"""Topic pub/sub: the message's `type` picks the route (`$request.body.type`).

    {"type": "subscribe", "topic": T}
    {"type": "unsubscribe", "topic": T}
    {"type": "message", "topic": T, "data": X}  -> the other subscribers of T receive
                                                 {"topic": T, "data": X}
Anything else gets an error frame naming the types this app understands. Subscriptions
live in the store, so a client that disconnects leaves its topics by itself.

    wsgate serve examples/topics.py
"""

import json

from wsgate import App, connections

app = App(route_selection="$request.body.type", name="topics")


async def reply_error(event, message):
    await connections.send(event.connection_id, json.dumps({"error": message}))


async def topic_of(event):
    """The message's topic, or None after telling the sender what is wrong."""
    topic = event.json.get("topic")
    if isinstance(topic, str) and topic:
        return topic
    await reply_error(event, f"{event.route_key} needs a non-empty string 'topic'")
    return None


@app.route("subscribe")
async def subscribe(event, context):
    if (topic := await topic_of(event)) is None:
        return
    await connections.subscribe(event.connection_id, topic)


@app.route("unsubscribe")
async def unsubscribe(event, context):
    if (topic := await topic_of(event)) is None:
        return
    await connections.unsubscribe(event.connection_id, topic)


@app.route("message")
async def message(event, context):
    if (topic := await topic_of(event)) is None:
        return
    payload = json.dumps({"topic": topic, "data": event.json.get("data")})
    await connections.publish(topic, payload, exclude=[event.connection_id])


@app.default
async def unknown(event, context):
    await reply_error(event, 'send {"type": "subscribe" | "unsubscribe" | "message", "topic": ...}')
