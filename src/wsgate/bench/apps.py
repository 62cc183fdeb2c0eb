"""The apps wsgate serves in the benchmark: `wsgate serve wsgate.bench.apps:app`.

They do what the reference servers do, through the gateway's normal paths: `$connect`
accepts (the gateway writes the connection record to the store itself), `echo` answers
the caller with `connections.send`, `subscribe` keeps the subscription in the store and
acknowledges, `publish` fans the unchanged body out to the topic's subscribers.

`app` has async handlers; `sync_app` the same handlers written as plain Lambda functions
(`def handler(event, context)`, as most Lambda apps are), which run on worker threads.
"""

from __future__ import annotations

from typing import Any

from wsgate import App, Event, LambdaContext, connections

#: What `subscribe` answers once the subscription is stored, so the client knows.
SUBSCRIBED = "ok"

app = App(route_selection="$request.body.action", name="wsgate-bench")


@app.on_connect
async def connect(event: Event, context: LambdaContext) -> dict[str, Any]:
    """Accept: measuring the handler round trip and the store write is the point."""
    return {"statusCode": 200}


@app.route("echo")
async def echo(event: Event, context: LambdaContext) -> None:
    """Send the body back to its sender, as an API Gateway app would with PostToConnection."""
    await connections.send(event.connection_id, event["body"])


@app.route("subscribe")
async def subscribe(event: Event, context: LambdaContext) -> None:
    """Store the subscription, then tell the client it is in place."""
    await connections.subscribe(event.connection_id, event.json["topic"])
    await connections.send(event.connection_id, SUBSCRIBED)


@app.route("publish")
async def publish(event: Event, context: LambdaContext) -> None:
    """Fan the unchanged body out (it carries the send timestamp the client measures by)."""
    await connections.publish(event.json["topic"], event["body"], exclude=[event.connection_id])


sync_app = App(route_selection="$request.body.action", name="wsgate-bench-sync")


@sync_app.on_connect
def connect_sync(event: Event, context: LambdaContext) -> dict[str, Any]:
    return {"statusCode": 200}


@sync_app.route("echo")
def echo_sync(event: Event, context: LambdaContext) -> None:
    connections.send(event.connection_id, event["body"])


@sync_app.route("subscribe")
def subscribe_sync(event: Event, context: LambdaContext) -> None:
    connections.subscribe(event.connection_id, event.json["topic"])
    connections.send(event.connection_id, SUBSCRIBED)


@sync_app.route("publish")
def publish_sync(event: Event, context: LambdaContext) -> None:
    connections.publish(event.json["topic"], event["body"], exclude=[event.connection_id])
