"""`wsgate.testing`: what users test their apps with behaves as the gateway does, with a
port or without sockets (each test runs in both modes where both offer what it uses)."""

from __future__ import annotations

import json
import queue
from collections.abc import Callable
from typing import Any

import pytest

from wsgate import App, connections
from wsgate.exceptions import WsgateError
from wsgate.testing import HandshakeRefused, TestGateway


@pytest.fixture(params=[False, True], ids=["socket", "socketless"])
def socketless(request: pytest.FixtureRequest) -> bool:
    return bool(request.param)


def chat_app() -> App:
    app = App()

    @app.on_connect
    def connect(event, context):  # type: ignore[no-untyped-def]
        if (event.get("queryStringParameters") or {}).get("token") != "ok":
            return {"statusCode": 401}
        return None

    @app.route("join")
    async def join(event, context):  # type: ignore[no-untyped-def]
        await connections.subscribe(event.connection_id, event.json["room"])

    @app.route("say")
    async def say(event, context):  # type: ignore[no-untyped-def]
        room, text = event.json["room"], event.json["text"]
        await connections.publish(room, text, exclude=[event.connection_id])

    @app.route("bye")
    async def bye(event, context):  # type: ignore[no-untyped-def]
        await connections.disconnect(event.connection_id)

    return app


def test_clients_know_their_ids_and_see_what_others_publish(socketless: bool) -> None:
    """connect() returns a client with its connection id; a publish reaches the other
    subscriber and not the publisher or a non-subscriber; the store is inspectable."""
    with TestGateway(chat_app(), socketless=socketless) as gateway:
        alice, bob, carol = (gateway.connect(query={"token": "ok"}) for _ in range(3))
        assert len({alice.connection_id, bob.connection_id, carol.connection_id}) == 3
        assert gateway.connection_ids() == sorted(
            [alice.connection_id, bob.connection_id, carol.connection_id]
        )
        for client in (alice, bob):
            client.send({"action": "join", "room": "r1"})
        # join runs as its own invocation: wait until the store has both
        for _ in range(50):
            if len(gateway.subscribers("r1")) == 2:
                break
            alice.expect_nothing(within=0.02)
        assert gateway.subscribers("r1") == sorted([alice.connection_id, bob.connection_id])
        assert gateway.topics(bob.connection_id) == ["r1"]
        alice.send({"action": "say", "room": "r1", "text": "hello"})
        assert bob.receive() == "hello"
        alice.expect_nothing()
        carol.expect_nothing()


def test_a_refused_handshake_raises_with_the_status_and_body(socketless: bool) -> None:
    """$connect's 401 is HandshakeRefused with API Gateway's JSON body."""
    with (
        TestGateway(chat_app(), socketless=socketless) as gateway,
        pytest.raises(HandshakeRefused) as refused,
    ):
        gateway.connect(query={"token": "wrong"})
    assert refused.value.status == 401
    assert refused.value.json() == {"message": "Unauthorized"}


def test_wait_closed_reports_the_gateways_close(socketless: bool) -> None:
    """A handler that disconnects its caller: the client sees 1000 and the reason."""
    with TestGateway(chat_app(), socketless=socketless) as gateway:
        client = gateway.connect(query={"token": "ok"})
        client.send({"action": "bye"})
        assert client.wait_closed() == (1000, "Connection Closed Normally")


def test_the_management_client_reaches_a_test_client() -> None:
    """boto3's client from management_client() posts to a connection of the gateway."""
    with TestGateway(chat_app()) as gateway:
        client = gateway.connect(query={"token": "ok"})
        gateway.management_client().post_to_connection(
            ConnectionId=client.connection_id, Data=b"from boto3"
        )
        assert client.receive() == "from boto3"


def test_the_pytest_fixture_starts_and_stops_gateways(
    wsgate_gateway: Callable[..., TestGateway], socketless: bool
) -> None:
    """The plugin's wsgate_gateway fixture: a started gateway, stopped after the test."""
    gateway = wsgate_gateway(chat_app(), socketless=socketless)
    client = gateway.connect(query={"token": "ok"})
    client.send({"action": "join", "room": "x"})
    client.send({"action": "say", "room": "x", "text": "nobody else"})
    client.expect_nothing()


def test_expect_nothing_fails_when_something_arrives(socketless: bool) -> None:
    """expect_nothing is an assertion: a message that arrives fails it."""
    app = App()
    app.default(lambda event, context: connections.send(event.connection_id, "echo"))
    with TestGateway(app, socketless=socketless) as gateway:
        client = gateway.connect()
        client.send("x")
        with pytest.raises(AssertionError, match="echo"):
            client.expect_nothing(within=2)


def test_headers_reach_connect_and_close_reaches_disconnect(socketless: bool) -> None:
    """connect(headers=...) is what `$connect` sees; close(code, reason) is what
    `$disconnect` sees."""
    seen: queue.Queue[Any] = queue.Queue()
    app = App()

    @app.on_connect
    def connect(event: Any, context: Any) -> None:
        seen.put(event["headers"]["X-Team"])

    @app.on_disconnect
    def disconnect(event: Any, context: Any) -> None:
        seen.put((event["requestContext"]["disconnectStatusCode"],
                  event["requestContext"]["disconnectReason"]))  # fmt: skip

    @app.default
    async def echo(event: Any, context: Any) -> None:
        await connections.send(event.connection_id, event["body"])

    with TestGateway(app, socketless=socketless) as gateway:
        client = gateway.connect(headers={"X-Team": "blue"})
        assert seen.get(timeout=5) == "blue"
        client.send("ping")
        assert client.receive() == "ping"
        client.close(4001, "done here")
        assert seen.get(timeout=5) == (4001, "done here")


def test_management_call_in_process(socketless: bool) -> None:
    """management_call answers @connections calls as the HTTP API does: 200, then 410."""
    with TestGateway(chat_app(), socketless=socketless) as gateway:
        client = gateway.connect(query={"token": "ok"})
        path = f"/@connections/{client.connection_id}"
        assert gateway.management_call("POST", path, b"posted").status == 200
        assert client.receive() == "posted"
        info = gateway.management_call("GET", path)
        assert json.loads(info.body)["identity"]["sourceIp"] == "127.0.0.1"
        other = gateway.connect(query={"token": "ok"})
        page = json.loads(gateway.management_call("GET", "/@connections?limit=1").body)
        assert page["count"] == 2 and len(page["connections"]) == 1 and "nextToken" in page
        other.close()
        assert gateway.management_call("DELETE", path).status == 204
        assert client.wait_closed()[0] == 1000
        assert gateway.management_call("POST", path, b"late").status == 410


def test_socketless_has_no_boto3_endpoint() -> None:
    """boto3 needs HTTP: a socketless gateway says so, and what to use instead."""
    with TestGateway(chat_app(), socketless=True) as gateway:
        with pytest.raises(WsgateError, match="management_call"):
            gateway.management_client()
        with pytest.raises(WsgateError, match="management_call"):
            gateway.management_url  # noqa: B018
