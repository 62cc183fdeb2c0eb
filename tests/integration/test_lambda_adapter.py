"""The Lambda adapter: API Gateway's events in, Lambda proxy responses out.

See docs/compatibility.md §3, §4 and §9.

Events are built with the same functions the gateway uses; sends go through boto3's real
`apigatewaymanagementapi` client to a real gateway's `@connections` API.
"""

from __future__ import annotations

import asyncio
import json
import queue
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from tests.conftest import TIMEOUT, recv, run_gateway, ws_connect
from wsgate import App, GoneError, connections
from wsgate.aws.lambda_handler import LambdaAdapter
from wsgate.core.events import ConnectionContext, connect_event, disconnect_event, message_event
from wsgate.exceptions import ConfigError
from wsgate.server import Server
from wsgate.store.base import ConnectionRecord
from wsgate.store.memory import MemoryStore

CONNECTION = ConnectionContext(
    connection_id="R1kmxc2VNjMCFIA=",
    connected_at=1705751697419,
    source_ip="49.105.91.154",
    user_agent="Mozilla/5.0",
    domain_name="dl7ptocha9.execute-api.ap-northeast-1.amazonaws.com",
    stage="prod",
    api_id="dl7ptocha9",
)


def connect(query: dict[str, str] | None = None) -> dict[str, Any]:
    return connect_event(
        CONNECTION,
        headers=[("Host", CONNECTION.domain_name), ("Sec-WebSocket-Protocol", "chat, json")],
        query=list((query or {}).items()),
        gateway_headers={},
        stage_variables=None,
        request_id="Dwz4lGRyvHcF0KQ=",
        now_ms=1705751697421,
    )


def message(route_key: str, body: str) -> dict[str, Any]:
    return message_event(
        CONNECTION,
        route_key=route_key,
        body=body,
        is_base64=False,
        stage_variables=None,
        message_id="R1knPc2ntjMCFIA=",
        request_id="R1knPH17NjMFftw=",
        now_ms=1705751700453,
    )


def disconnect() -> dict[str, Any]:
    return disconnect_event(
        CONNECTION,
        status_code=1001,
        reason="",
        stage_variables=None,
        request_id="R1koeHsUtjMFbRw=",
        now_ms=1705751708326,
    )


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


def test_connect_accepts_records_and_passes_the_subprotocol() -> None:
    """$connect: a 2xx writes the connection to the store; only the subprotocol is passed."""
    app = App()
    app.on_connect(
        lambda event, context: {
            "statusCode": 200,
            "headers": {"Sec-WebSocket-Protocol": "chat", "X-Other": "dropped"},
            "body": "ignored",
        }
    )
    store = MemoryStore()
    with LambdaAdapter(app, store) as adapter:
        response = adapter(connect(), None)
        assert response == {"statusCode": 200, "headers": {"Sec-WebSocket-Protocol": "chat"}}
        record = run(store.get_connection(CONNECTION.connection_id))
        assert record is not None
        assert (record.source_ip, record.user_agent, record.stage) == (
            "49.105.91.154",
            "Mozilla/5.0",
            "prod",
        )


def test_connect_none_accepts_and_refusal_records_nothing() -> None:
    """$connect returning None accepts (as locally); a 401 is passed on and stores nothing."""
    app = App()

    @app.on_connect
    def on_connect(event, context):
        if event["queryStringParameters"]["token"] != "good":
            return {"statusCode": 401}
        return None

    store = MemoryStore()
    with LambdaAdapter(app, store) as adapter:
        assert adapter(connect({"token": "bad"}), None) == {"statusCode": 401}
        assert run(store.connection_ids()) == []
        assert adapter(connect({"token": "good"}), None) == {"statusCode": 200}
        assert run(store.connection_ids()) == [CONNECTION.connection_id]


def test_app_without_connect_route_still_records_connections() -> None:
    """Without a $connect route the adapter still keeps the store current."""
    store = MemoryStore()
    with LambdaAdapter(App(), store) as adapter:
        assert adapter(connect(), None) == {"statusCode": 200}
        assert run(store.connection_ids()) == [CONNECTION.connection_id]


def test_disconnect_forgets_connection_and_subscriptions_then_runs_handler() -> None:
    """$disconnect removes the connection and its subscriptions, then runs the handler."""
    app = App()
    seen: list[int] = []
    app.on_disconnect(
        lambda event, context: seen.append(event["requestContext"]["disconnectStatusCode"])
    )
    store = MemoryStore()
    with LambdaAdapter(app, store) as adapter:
        adapter(connect(), None)
        assert run(store.subscribe(CONNECTION.connection_id, "news"))
        assert adapter(disconnect(), None) == {"statusCode": 200}
        assert run(store.connection_ids()) == [] and run(store.subscribers("news")) == []
        assert seen == [1001]


def test_message_routes_one_way_and_two_way() -> None:
    """One-way routes answer a bare 200; two-way routes return the reply as the body."""
    app = App()
    app.route("one")(lambda event, context: {"statusCode": 200, "body": "not sent"})
    app.route("two", return_response=True)(lambda event, context: ["echo", event.json["x"]])
    app.route("raw", return_response=True)(lambda event, context: {"body": "text"})
    with LambdaAdapter(app, MemoryStore()) as adapter:
        assert adapter(message("one", '{"action": "one"}'), None) == {"statusCode": 200}
        assert adapter(message("two", '{"action": "two", "x": 5}'), None) == {
            "statusCode": 200,
            "body": '["echo", 5]',
        }
        assert adapter(message("raw", '{"action": "raw"}'), None)["body"] == "text"


def test_async_handlers_and_handler_errors() -> None:
    """Async handlers are awaited; a handler error is raised, as a Lambda function error."""
    app = App()

    @app.route("ok", return_response=True)
    async def ok(event, context):
        await asyncio.sleep(0)
        return {"body": event.connection_id}

    @app.route("fail")
    async def fail(event, context):
        raise KeyError("data")

    with LambdaAdapter(app, MemoryStore()) as adapter:
        assert adapter(message("ok", "{}"), None)["body"] == CONNECTION.connection_id
        with pytest.raises(KeyError):
            adapter(message("fail", "{}"), None)


def test_unknown_route_is_a_clear_configuration_error() -> None:
    """A route API Gateway knows but the app does not: an error saying to redeploy."""
    with LambdaAdapter(App(name="chat"), MemoryStore()) as adapter:
        with pytest.raises(ConfigError, match="redeploy"):
            adapter(message("ghost", "{}"), None)


@contextmanager
def gateway_with_client() -> Iterator[tuple[Server, Any, str]]:
    """A real gateway holding one real client, and that client's connection id."""
    app = App()
    ids: queue.Queue[str] = queue.Queue()
    app.on_connect(lambda event, context: ids.put(event.connection_id))
    with run_gateway(app) as server, ws_connect(server.url) as ws:
        yield server, ws, ids.get(timeout=TIMEOUT)


def test_sends_go_through_the_management_api() -> None:
    """connections.send in a Lambda handler posts through @connections to the real client."""
    app = App()

    @app.route("tell")
    def tell(event, context):
        body = event.json
        connections.send(body["to"], body["text"])

    with gateway_with_client() as (server, ws, target):
        with LambdaAdapter(
            app, MemoryStore(), management_endpoint=server.management_url
        ) as adapter:
            adapter(message("tell", json.dumps({"to": target, "text": "via boto3"})), None)
            assert recv(ws) == "via boto3"


def test_as_many_sending_sync_handlers_as_threads_do_not_deadlock() -> None:
    """Every handler thread busy in a send: the posts have threads of their own."""
    app = App()
    posted: queue.Queue[str] = queue.Queue()
    both_running = threading.Barrier(2, timeout=TIMEOUT)

    @app.route("tell")
    def tell(event, context):
        both_running.wait()  # the two handler threads are busy at once
        connections.send(event.json["to"], "hi")

    class Client:
        class exceptions:
            GoneException = KeyError

        def post_to_connection(self, **kwargs: Any) -> None:
            posted.put(kwargs["ConnectionId"])

    def one(adapter: LambdaAdapter, target: str) -> None:
        adapter(message("tell", json.dumps({"to": target})), None)

    with LambdaAdapter(
        app, MemoryStore(), client_factory=lambda endpoint: Client(), max_concurrency=2
    ) as adapter:
        callers = [threading.Thread(target=one, args=(adapter, t), daemon=True) for t in "AB"]
        for caller in callers:
            caller.start()
        for caller in callers:
            caller.join(TIMEOUT)
        assert not any(caller.is_alive() for caller in callers), "deadlocked"
        assert sorted(posted.get_nowait() for _ in range(2)) == ["A", "B"]


def test_gone_connections_leave_the_store_after_the_grace_period() -> None:
    """A 410 removes an old connection record, but not one still inside its handshake."""
    app = App()
    outcomes: list[str] = []

    @app.route("poke")
    async def poke(event, context):
        try:
            await connections.send(event.json["to"], "x")
        except GoneError:
            outcomes.append("gone")

    store = MemoryStore()
    old = ConnectionRecord(connection_id="old=", connected_at=1, source_ip="1.2.3.4")
    fresh = ConnectionRecord(
        connection_id="fresh=", connected_at=CONNECTION.connected_at * 10, source_ip="1.2.3.4"
    )
    run(store.add_connection(old))
    run(store.add_connection(fresh))
    with gateway_with_client() as (server, _, _):
        with LambdaAdapter(app, store, management_endpoint=server.management_url) as adapter:
            adapter(message("poke", '{"to": "old="}'), None)
            adapter(message("poke", '{"to": "fresh="}'), None)
    assert outcomes == ["gone", "gone"]
    assert run(store.connection_ids()) == ["fresh="]
