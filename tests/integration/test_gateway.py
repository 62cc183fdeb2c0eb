"""API Gateway semantics, point by point, through a real socket and a real client.

Each test names the section of docs/compatibility.md it holds us to.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import queue
import re
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.conftest import TIMEOUT, recv, run_gateway, ws_connect
from wsgate import App, GoneError, Limits, PayloadTooLargeError, WsgateError, connections

ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{15}=$")


class Recorder:
    """Collects the events handlers saw, across threads."""

    def __init__(self) -> None:
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()

    def __call__(self, event: dict[str, Any], context: Any) -> None:
        self.events.put(dict(event))

    def next(self, route_key: str | None = None) -> dict[str, Any]:
        while True:
            event = self.events.get(timeout=TIMEOUT)
            if route_key is None or event["requestContext"]["routeKey"] == route_key:
                return event


def closed_code(ws: Any) -> int:
    """Wait for the server to close `ws`; return the close code it sent."""
    with pytest.raises(ConnectionClosed) as info:
        while True:
            ws.recv(timeout=TIMEOUT)
    assert info.value.rcvd is not None
    return info.value.rcvd.code


# -- $connect (docs/compatibility.md §1.2, §3.3, §4.1) ------------------------------------


def test_connect_event_carries_headers_and_query() -> None:
    """$connect sees the client's headers (casing kept, hop headers dropped) and query."""
    app = App()
    recorder = Recorder()
    app.on_connect(recorder)
    with run_gateway(app, stage="prod") as server:
        with ws_connect(
            server.url + "?token=abc&tag=1&tag=2", additional_headers={"X-Custom": "v"}
        ):
            event = recorder.next("$connect")
    headers = event["headers"]
    assert headers["X-Custom"] == "v"
    assert not {"connection", "upgrade", "content-length"} & {k.lower() for k in headers}
    assert headers["X-Forwarded-For"] == "127.0.0.1"
    assert event["queryStringParameters"] == {"token": "abc", "tag": "2"}
    assert event["multiValueQueryStringParameters"]["tag"] == ["1", "2"]
    context = event["requestContext"]
    assert context["eventType"] == "CONNECT"
    assert context["stage"] == "prod"
    assert context["domainName"] == f"127.0.0.1:{server.port}"
    assert ID_PATTERN.match(context["connectionId"])
    assert context["requestId"] == context["extendedRequestId"]
    assert context["identity"]["sourceIp"] == "127.0.0.1"
    assert len(context["apiId"]) == 10
    assert event["isBase64Encoded"] is False
    assert "body" not in event


def test_connect_event_without_query_has_no_query_keys() -> None:
    """Without a query string the query keys are absent, not empty (as on AWS)."""
    app = App()
    recorder = Recorder()
    app.on_connect(recorder)
    with run_gateway(app) as server, ws_connect(server.url):
        event = recorder.next("$connect")
    assert "queryStringParameters" not in event
    assert "multiValueQueryStringParameters" not in event


@pytest.mark.parametrize("status", [400, 401, 403, 500])
def test_connect_refusal_answers_the_handshake_with_that_status(status: int) -> None:
    """A non-2xx statusCode from $connect fails the handshake with that HTTP status."""
    app = App()
    recorder = Recorder()
    app.on_connect(lambda event, context: {"statusCode": status})
    app.on_disconnect(recorder)
    with run_gateway(app) as server:
        with pytest.raises(InvalidStatus) as info:
            ws_connect(server.url)
        assert info.value.response.status_code == status
        with pytest.raises(queue.Empty):  # no $disconnect for a refused handshake
            recorder.events.get(timeout=0.3)


def test_connect_handler_error_is_502_and_timeout_504() -> None:
    """$connect raising answers 502; running past the handler timeout answers 504."""
    app = App()

    @app.on_connect
    async def connect(event, context):
        mode = event["queryStringParameters"]["mode"]
        if mode == "raise":
            raise RuntimeError("boom")
        await asyncio.sleep(10)

    with run_gateway(app, limits=Limits(handler_timeout=0.3)) as server:
        for mode, status in (("raise", 502), ("sleep", 504)):
            with pytest.raises(InvalidStatus) as info:
                ws_connect(f"{server.url}?mode={mode}")
            assert info.value.response.status_code == status


def test_no_connect_route_accepts_everyone() -> None:
    """Without a $connect route the connection is simply accepted (unlike serverless-offline)."""
    app = App()
    app.default(lambda event, context: {"statusCode": 200})
    with run_gateway(app) as server, ws_connect(server.url) as ws:
        assert ws.ping().wait(TIMEOUT)  # open: the gateway answers


def test_send_from_inside_connect_is_gone() -> None:
    """The connection is not open during $connect: sending to it raises GoneError (410)."""
    app = App()
    outcome: list[str] = []

    @app.on_connect
    async def connect(event, context):
        try:
            await connections.send(event.connection_id, "too early")
        except GoneError:
            outcome.append("gone")

    with run_gateway(app) as server, ws_connect(server.url) as ws:
        with pytest.raises(TimeoutError):
            ws.recv(timeout=0.3)
    assert outcome == ["gone"]


def test_messages_wait_for_connect_to_finish() -> None:
    """The 101 is sent only after $connect returns, so no message can overtake it."""
    app = App()
    order: list[str] = []

    @app.on_connect
    async def connect(event, context):
        await asyncio.sleep(0.2)
        order.append("connect done")

    @app.default
    async def default(event, context):
        order.append("message")
        await connections.send(event.connection_id, "ok")

    with run_gateway(app) as server, ws_connect(server.url) as ws:
        ws.send("hi")
        assert recv(ws) == "ok"
    assert order == ["connect done", "message"]


def test_subprotocol_only_when_connect_returns_it() -> None:
    """Sec-WebSocket-Protocol is answered only with the value $connect returns."""
    app = App()

    @app.on_connect
    def connect(event, context):
        offered = event["headers"].get("Sec-WebSocket-Protocol", "")
        if "chat" in offered:
            return {"statusCode": 200, "headers": {"Sec-WebSocket-Protocol": "chat"}}
        return {"statusCode": 200}

    with run_gateway(app) as server:
        with ws_connect(server.url, subprotocols=["chat", "other"]) as ws:
            assert ws.subprotocol == "chat"
        with ws_connect(server.url) as ws:
            assert ws.subprotocol is None


# -- routing and error frames (docs/compatibility.md §2.3, §2.4, §4.2) --------------------


def test_custom_route_selection_expression_with_nested_path() -> None:
    """A nested selection expression picks routes; unmatched and non-JSON go to $default."""
    app = App(route_selection="$request.body.meta.kind")
    app.route("ping", return_response=True)(lambda event, context: {"body": "pong"})
    app.route("1", return_response=True)(lambda event, context: {"body": "number"})
    app.default(lambda event, context: connections.send(event.connection_id, "default"))
    with run_gateway(app) as server, ws_connect(server.url) as ws:
        for message, reply in (
            ({"meta": {"kind": "ping"}}, "pong"),
            ({"meta": {"kind": 1}}, "number"),
            ({"meta": {"kind": "PING"}}, "default"),
            ({"kind": "ping"}, "default"),
        ):
            ws.send(json.dumps(message))
            assert recv(ws) == reply
        ws.send("not json")
        assert recv(ws) == "default"


def test_no_route_and_no_default_gets_forbidden_frame() -> None:
    """No matching route and no $default: AWS's Forbidden frame, and the socket stays open."""
    app = App()
    app.route("known", return_response=True)(lambda event, context: {"body": "ok"})
    recorder = Recorder()
    app.on_connect(recorder)
    with run_gateway(app) as server, ws_connect(server.url) as ws:
        connection_id = recorder.next()["requestContext"]["connectionId"]
        ws.send("hi")
        frame = recv(ws)
        assert re.fullmatch(
            r'\{"message": "Forbidden", "connectionId":"'
            + re.escape(connection_id)
            + r'", "requestId":"[A-Za-z0-9_-]{15}="\}',
            frame,
        ), frame
        ws.send(json.dumps({"action": "known"}))
        assert recv(ws) == "ok"


def test_route_key_cannot_target_connect() -> None:
    """A message whose key evaluates to $connect is not routed to $connect."""
    app = App()
    calls: list[str] = []
    app.on_connect(lambda event, context: calls.append("connect"))
    with run_gateway(app) as server, ws_connect(server.url) as ws:
        ws.send(json.dumps({"action": "$connect"}))
        assert json.loads(recv(ws))["message"] == "Forbidden"
    assert calls == ["connect"]


def test_handler_error_sends_internal_server_error_and_keeps_serving() -> None:
    """A handler that raises: the caller gets the error frame, its socket and others live on."""
    app = App()

    @app.route("boom")
    def boom(event, context):
        raise ValueError("bad input")

    app.default(lambda event, context: connections.send(event.connection_id, "alive"))
    with run_gateway(app) as server, ws_connect(server.url) as ws, ws_connect(server.url) as other:
        ws.send(json.dumps({"action": "boom"}))
        frame = json.loads(recv(ws))
        assert frame["message"] == "Internal server error"
        assert list(frame) == ["message", "connectionId", "requestId"]
        ws.send("still there?")
        assert recv(ws) == "alive"
        other.send("and me?")
        assert recv(other) == "alive"


def test_handler_timeout_sends_endpoint_request_timed_out() -> None:
    """A handler past the handler timeout: the 'Endpoint request timed out' frame."""
    app = App()

    @app.default
    async def slow(event, context):
        await asyncio.sleep(10)

    with (
        run_gateway(app, limits=Limits(handler_timeout=0.2)) as server,
        ws_connect(server.url) as ws,
    ):
        ws.send("hi")
        assert json.loads(recv(ws))["message"] == "Endpoint request timed out"


def test_sync_handler_timeout_and_error_answer_the_caller_and_the_thread_runs_on() -> None:
    """A sync handler past the timeout gets the timeout frame, one that raises the error
    frame; the timed-out one still finishes on its thread (as a Lambda would), unheard."""
    app = App()
    finished = threading.Event()

    @app.route("slow")
    def slow(event, context):
        time.sleep(0.5)
        connections.send(event.connection_id, "late")  # the connection is still open
        finished.set()

    @app.route("fail")
    def fail(event, context):
        raise RuntimeError("boom")

    @app.route("ping", return_response=True)
    def ping(event, context):
        return {"body": "pong"}

    with (
        run_gateway(app, limits=Limits(handler_timeout=0.2)) as server,
        ws_connect(server.url) as ws,
    ):
        ws.send(json.dumps({"action": "slow"}))
        assert json.loads(recv(ws))["message"] == "Endpoint request timed out"
        assert finished.wait(TIMEOUT)
        assert recv(ws) == "late"
        ws.send(json.dumps({"action": "fail"}))
        assert json.loads(recv(ws))["message"] == "Internal server error"
        ws.send(json.dumps({"action": "ping"}))
        assert recv(ws) == "pong"


def test_route_response_only_on_two_way_routes() -> None:
    """A route's return value reaches the caller only when the route returns responses."""
    app = App()
    app.route("two", return_response=True)(lambda event, context: {"statusCode": 500, "body": "b"})
    app.route("empty", return_response=True)(lambda event, context: {"statusCode": 200})
    app.route("plain", return_response=True)(lambda event, context: {"n": 1} and [1, "x"])
    app.route("one")(lambda event, context: {"statusCode": 200, "body": "never sent"})
    with run_gateway(app) as server, ws_connect(server.url) as ws:
        ws.send(json.dumps({"action": "one"}))
        ws.send(json.dumps({"action": "two"}))
        assert recv(ws) == "b"  # statusCode is ignored, as on AWS
        ws.send(json.dumps({"action": "empty"}))
        assert recv(ws) == ""
        ws.send(json.dumps({"action": "plain"}))
        assert json.loads(recv(ws)) == [1, "x"]
        with pytest.raises(TimeoutError):
            ws.recv(timeout=0.3)


def test_message_event_shape() -> None:
    """MESSAGE events carry the body unchanged, a messageId, and no headers."""
    app = App()
    recorder = Recorder()
    app.default(recorder)
    with run_gateway(app) as server, ws_connect(server.url) as ws:
        ws.send('{\r\n\t"a": 1\r\n}')
        event = recorder.next("$default")
    assert event["body"] == '{\r\n\t"a": 1\r\n}'
    assert "headers" not in event and "queryStringParameters" not in event
    context = event["requestContext"]
    assert context["eventType"] == "MESSAGE"
    assert ID_PATTERN.match(context["messageId"])
    assert context["messageDirection"] == "IN"
    assert re.fullmatch(r"\d\d/[A-Z][a-z]{2}/\d{4}:\d\d:\d\d:\d\d \+0000", context["requestTime"])


def test_sync_handlers_do_not_block_the_event_loop() -> None:
    """A sync handler that blocks does not stop other connections' handlers from running."""
    app = App()
    released = threading.Event()

    @app.route("block", return_response=True)
    def block(event, context):
        return {"body": "released" if released.wait(TIMEOUT) else "loop was blocked"}

    @app.route("release", return_response=True)
    async def release(event, context):
        released.set()
        return {"body": "done"}

    with run_gateway(app) as server, ws_connect(server.url) as a, ws_connect(server.url) as b:
        a.send(json.dumps({"action": "block"}))
        time.sleep(0.1)
        b.send(json.dumps({"action": "release"}))
        assert recv(b) == "done"
        assert recv(a) == "released"


def test_sync_handler_uses_connections_api_blocking() -> None:
    """From a sync handler, connections calls block and return their results."""
    app = App()

    @app.default
    def who(event, context):
        info = connections.info(event.connection_id)
        connections.send(event.connection_id, json.dumps([info.connection_id, info.source_ip]))

    recorder = Recorder()
    app.on_connect(recorder)
    with run_gateway(app) as server, ws_connect(server.url) as ws:
        connection_id = recorder.next()["requestContext"]["connectionId"]
        ws.send("x")
        assert json.loads(recv(ws)) == [connection_id, "127.0.0.1"]


def test_sync_handler_sends_arrive_in_order_before_its_response() -> None:
    """A sync handler's sends are written in call order, and before its route response."""
    app = App()

    @app.route("count", return_response=True)
    def count(event, context):
        for n in range(5):
            connections.send(event.connection_id, f"send {n}")
        return {"body": "response"}

    with run_gateway(app) as server, ws_connect(server.url) as ws:
        for _ in range(3):
            ws.send(json.dumps({"action": "count"}))
            assert [recv(ws) for _ in range(6)] == [f"send {n}" for n in range(5)] + ["response"]


def test_sync_handler_send_errors_reach_the_handler() -> None:
    """From a sync handler: an unknown or closed connection raises GoneError, data over
    128 KB PayloadTooLargeError; the handler can catch both and carry on."""
    app = App()
    recorder = Recorder()
    app.on_connect(recorder)
    app.on_disconnect(recorder)

    @app.route("try", return_response=True)
    def attempt(event, context):
        outcomes = []
        for target, data in [
            (event.json["to"], "hello"),
            ("AAAAAAAAAAAAAAA=", "hello"),
            (event.connection_id, "x" * (128 * 1024 + 1)),
        ]:
            try:
                connections.send(target, data)
                outcomes.append("sent")
            except GoneError:
                outcomes.append("gone")
            except PayloadTooLargeError:
                outcomes.append("too large")
        return {"body": json.dumps(outcomes)}

    with run_gateway(app) as server, ws_connect(server.url) as ws:
        recorder.next("$connect")
        with ws_connect(server.url):
            leaving_id = recorder.next("$connect")["requestContext"]["connectionId"]
        recorder.next("$disconnect")  # the gateway has seen it go
        ws.send(json.dumps({"action": "try", "to": leaving_id}))
        assert json.loads(recv(ws)) == ["gone", "gone", "too large"]


def test_connections_from_a_foreign_event_loop_is_a_clear_error() -> None:
    """A sync handler that runs an event loop of its own and calls `connections` there
    gets WsgateError saying so (it would otherwise block that loop), for `send` too."""
    app = App()

    @app.route("nested", return_response=True)
    def nested(event, context):
        async def inner() -> str:
            try:
                connections.send(event.connection_id, "from a foreign loop")
            except WsgateError as exc:
                return str(exc)
            return "sent"

        return {"body": asyncio.run(inner())}

    with run_gateway(app) as server, ws_connect(server.url) as ws:
        ws.send(json.dumps({"action": "nested"}))
        assert recv(ws) == "wsgate.connections was called from a foreign event loop"


def test_lambda_context_counts_down_to_the_handler_timeout() -> None:
    """context.get_remaining_time_in_millis() counts down to the handler timeout."""
    app = App(name="fn")

    @app.default
    async def default(event, context):
        return None

    app.route("ctx", return_response=True)(
        lambda event, context: {
            "body": json.dumps(
                [
                    context.function_name,
                    context.get_remaining_time_in_millis(),
                    context.aws_request_id,
                ]
            )
        }
    )
    with run_gateway(app, limits=Limits(handler_timeout=5)) as server, ws_connect(server.url) as ws:
        ws.send(json.dumps({"action": "ctx"}))
        name, remaining, request_id = json.loads(recv(ws))
    assert name == "fn"
    assert 0 < remaining <= 5000
    assert re.fullmatch(r"[0-9a-f-]{36}", request_id)


# -- $disconnect and closes (docs/compatibility.md §3.2, §4.3, §5, §8.2) ------------------


def test_disconnect_receives_client_close_code_and_reason() -> None:
    """$disconnect runs on a client close with its status code and reason."""
    app = App()
    recorder = Recorder()
    app.on_disconnect(recorder)
    with run_gateway(app) as server:
        with ws_connect(server.url) as ws:
            ws.close(code=4001, reason="bye now")
        event = recorder.next("$disconnect")
    context = event["requestContext"]
    assert (context["disconnectStatusCode"], context["disconnectReason"]) == (4001, "bye now")
    assert event["headers"] == {
        "Host": f"127.0.0.1:{server.port}",
        "x-api-key": "",
        "X-Forwarded-For": "",
        "x-restapi": "",
    }


def test_disconnect_info_is_gone_and_store_is_clean() -> None:
    """By $disconnect the connection has left the store: info() raises GoneError."""
    app = App()
    seen: list[str] = []

    @app.on_disconnect
    async def disconnect(event, context):
        try:
            await connections.info(event.connection_id)
        except GoneError:
            seen.append("gone")

    with run_gateway(app) as server:
        with ws_connect(server.url):
            pass
        deadline = time.monotonic() + TIMEOUT
        while not seen and time.monotonic() < deadline:
            time.sleep(0.02)
    assert seen == ["gone"]


def test_idle_timeout_closes_with_1001_going_away() -> None:
    """A connection idle past the idle timeout is closed with 1001 'Going away'."""
    app = App()
    recorder = Recorder()
    app.on_disconnect(recorder)
    with run_gateway(app, limits=Limits(idle_timeout=0.3)) as server, ws_connect(server.url) as ws:
        assert closed_code(ws) == 1001
        context = recorder.next("$disconnect")["requestContext"]
    assert (context["disconnectStatusCode"], context["disconnectReason"]) == (1001, "Going away")


def test_messages_keep_a_connection_alive_until_max_duration() -> None:
    """Activity resets the idle timer, but the maximum duration closes the connection anyway."""
    app = App()
    app.default(lambda event, context: None)
    limits = Limits(idle_timeout=0.4, max_connection_duration=1.2)
    with run_gateway(app, limits=limits) as server, ws_connect(server.url) as ws:
        started = time.monotonic()
        with pytest.raises(ConnectionClosed) as info:
            while True:
                ws.send("keepalive")
                time.sleep(0.1)
        lived = time.monotonic() - started
    assert info.value.rcvd is not None and info.value.rcvd.code == 1001
    assert lived >= 1.0  # outlived the idle timeout thanks to the messages


def test_binary_frame_closes_with_1003() -> None:
    """An inbound binary frame closes the connection with 1003, as API Gateway does."""
    app = App()
    recorder = Recorder()
    app.on_disconnect(recorder)
    app.default(lambda event, context: None)
    with run_gateway(app) as server, ws_connect(server.url) as ws:
        ws.send(b"\x00\x01")
        assert closed_code(ws) == 1003
        assert recorder.next("$disconnect")["requestContext"]["disconnectStatusCode"] == 1003


def test_binary_frames_accepted_base64_when_enabled() -> None:
    """With binary='base64', binary frames reach $default base64-encoded."""
    app = App(binary="base64")
    recorder = Recorder()
    app.default(recorder)
    with run_gateway(app) as server, ws_connect(server.url) as ws:
        ws.send(b"\x00\xffdata")
        event = recorder.next("$default")
        assert event["isBase64Encoded"] is True
        assert base64.b64decode(event["body"]) == b"\x00\xffdata"


def test_oversized_message_closes_with_1009() -> None:
    """A message over the 128 KB limit closes the connection with 1009; others carry on.

    Sent in 32 KB frames, since a bigger frame is refused on its own (next test)."""
    app = App()
    recorder = Recorder()
    app.on_disconnect(recorder)
    app.default(lambda event, context: connections.send(event.connection_id, "ok"))
    frame = "x" * 32 * 1024
    with run_gateway(app) as server, ws_connect(server.url) as ws, ws_connect(server.url) as other:
        ws.send(iter([frame] * 4))  # exactly the limit is fine
        assert recv(ws) == "ok"
        # The gateway closes as soon as the total passes the limit, maybe while the client
        # is still sending the message's last (empty) frame: that send may fail.
        with contextlib.suppress(ConnectionClosed):
            ws.send(iter([frame] * 4 + ["x"]))
        assert closed_code(ws) == 1009
        context = recorder.next("$disconnect")["requestContext"]
        assert context["disconnectStatusCode"] == 1009
        other.send("hi")
        assert recv(other) == "ok"


def test_frame_over_32_kb_closes_with_1009() -> None:
    """API Gateway's 32 KB frame quota: a browser's 33 KB message (one frame) is refused."""
    app = App()
    recorder = Recorder()
    app.on_disconnect(recorder)
    app.default(lambda event, context: connections.send(event.connection_id, "ok"))
    with run_gateway(app) as server, ws_connect(server.url) as ws, ws_connect(server.url) as other:
        ws.send("x" * 32 * 1024)  # exactly the quota is fine
        assert recv(ws) == "ok"
        ws.send("x" * (32 * 1024 + 1))
        assert closed_code(ws) == 1009
        context = recorder.next("$disconnect")["requestContext"]
        assert context["disconnectStatusCode"] == 1009
        other.send("hi")
        assert recv(other) == "ok"


def test_frame_limit_is_configurable_and_never_above_the_message_limit() -> None:
    """`Limits(max_frame_bytes=...)` lifts the quota; a one-frame message still obeys its own."""
    app = App()
    app.default(lambda event, context: connections.send(event.connection_id, "ok"))
    limits = Limits(max_frame_bytes=256 * 1024)  # above the 128 KB message limit
    with run_gateway(app, limits=limits) as server, ws_connect(server.url) as ws:
        ws.send("x" * 128 * 1024)
        assert recv(ws) == "ok"
        ws.send("x" * (128 * 1024 + 1))
        assert closed_code(ws) == 1009


def test_invalid_utf8_text_closes_with_1007() -> None:
    """A text frame that is not UTF-8 closes with 1007 (RFC 6455)."""
    app = App()
    app.default(lambda event, context: None)
    with run_gateway(app) as server, ws_connect(server.url) as ws:
        ws.send(b"\xff\xfe", text=True)
        assert closed_code(ws) == 1007


def test_shutdown_runs_disconnect_for_open_connections() -> None:
    """Stopping the gateway closes connections with 1001 and runs their $disconnect."""
    app = App()
    recorder = Recorder()
    app.on_disconnect(recorder)
    with ws_connect_after(app) as ws:
        assert closed_code(ws) == 1001
    assert recorder.next("$disconnect")["requestContext"]["disconnectStatusCode"] == 1001


@contextlib.contextmanager
def ws_connect_after(app: App) -> Iterator[Any]:
    """A client connected to a gateway that stops before the block runs."""
    with run_gateway(app) as server:
        ws = ws_connect(server.url).__enter__()
    try:
        yield ws
    finally:
        ws.__exit__(None, None, None)


def test_connection_ids_are_unique() -> None:
    """Every connection gets its own unguessable id in API Gateway's format."""
    app = App()
    recorder = Recorder()
    app.on_connect(recorder)
    with run_gateway(app) as server:
        for _ in range(20):
            with ws_connect(server.url):
                pass
        ids = {recorder.next("$connect")["requestContext"]["connectionId"] for _ in range(20)}
    assert len(ids) == 20
    assert all(ID_PATTERN.match(i) for i in ids)


def test_unserialisable_route_response_is_internal_server_error() -> None:
    """A two-way route returning what JSON cannot encode gets the error frame (MarshalError)."""
    app = App()
    app.route("bad", return_response=True)(lambda event, context: {1, 2})
    with run_gateway(app) as server, ws_connect(server.url) as ws:
        ws.send(json.dumps({"action": "bad"}))
        assert json.loads(recv(ws))["message"] == "Internal server error"


def test_records_of_another_gateway_node_are_not_deleted() -> None:
    """In a shared store, a send to another node's connection leaves that node's record alone."""
    from wsgate.store.base import ConnectionRecord
    from wsgate.store.memory import MemoryStore

    store = MemoryStore()
    app = App()
    outcomes: list[str] = []

    @app.default
    async def poke(event, context):
        for target in ("other=", "stale="):
            try:
                await connections.send(target, "x")
            except GoneError:
                outcomes.append(target)
        await connections.send(event.connection_id, "done")

    with run_gateway(app, store=store) as server, ws_connect(server.url) as ws:
        own_node = server.gateway.node
        asyncio.run(store.add_connection(ConnectionRecord("other=", 1, "10.0.0.2", node="node-b")))
        asyncio.run(store.add_connection(ConnectionRecord("stale=", 1, "10.0.0.3", node=own_node)))
        ws.send("go")
        assert recv(ws) == "done"
        remaining = asyncio.run(store.connection_ids())
    assert outcomes == ["other=", "stale="]
    assert "other=" in remaining and "stale=" not in remaining


def test_handlers_run_in_a_task_from_their_first_line() -> None:
    """asyncio.timeout and TaskGroup work in a handler, as in any asyncio code."""
    app = App()

    @app.default
    async def default(event: Any, context: Any) -> None:
        assert asyncio.current_task() is not None
        async with asyncio.timeout(5), asyncio.TaskGroup() as group:
            group.create_task(asyncio.sleep(0))
        await connections.send(event.connection_id, "in a task")

    with run_gateway(app) as server, ws_connect(server.url) as ws:
        ws.send("hello")
        assert recv(ws) == "in a task"


def _deep(depth: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(depth):
        value = [value]
    return value


def _circular() -> dict[str, Any]:
    value: dict[str, Any] = {"statusCode": 200}
    value["self"] = value
    return value


@pytest.mark.parametrize(
    "result",
    [
        pytest.param({"body": "x" * (1024 * 1024)}, id="1MB"),
        pytest.param(float("nan"), id="nan"),
        pytest.param({"body": _deep(100_000)}, id="deep"),
        pytest.param(_circular(), id="circular"),
    ],
)
def test_route_response_api_gateway_cannot_send_is_internal_server_error(result: Any) -> None:
    """A two-way reply over 128 KB, with NaN, too deep or circular gets the error frame
    (docs/compatibility.md §4.2), and the connection goes on."""
    app = App()
    app.route("bad", return_response=True)(lambda event, context: result)
    app.route("ok", return_response=True)(lambda event, context: {"body": "fine"})
    with run_gateway(app) as server, ws_connect(server.url) as ws:
        ws.send(json.dumps({"action": "bad"}))
        assert json.loads(recv(ws))["message"] == "Internal server error"
        ws.send(json.dumps({"action": "ok"}))
        assert recv(ws) == "fine"
