"""The shipped examples and the demo app keep the contracts their docstrings promise.

Each example is loaded the way `wsgate serve examples/NAME.py` loads it and driven by several
real WebSocket clients through the real gateway.
"""

from __future__ import annotations

import json
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import ClientConnection

from tests.conftest import TIMEOUT_FACTOR, management_client, recv, run_gateway, ws_connect
from tests.moto_server import dynamodb_store_url
from wsgate import App
from wsgate.aws.lambda_handler import LambdaAdapter
from wsgate.importer import load_app
from wsgate.store import open_store
from wsgate.testing import TestGateway, WebSocket

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"

#: The gateway's own @connections API, as `wsgate serve --lambda` points the adapter at it.
LAMBDA_MODE_ENDPOINT = "http://{domainName}/{stage}"

#: How long "nothing arrives" is watched for.
QUIET = 0.25 * TIMEOUT_FACTOR


@pytest.fixture(params=["gateway", "lambda"])
def load_example(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[[str], App]]:
    """Load examples/NAME with the CLI's importer; undo its sys.path and sys.modules changes.

    Every contract is checked twice: handlers called by the gateway directly, and in Lambda
    mode, as on AWS: each route goes through the Lambda adapter, the app's state lives in
    DynamoDB (a moto server) and every send travels over HTTP through boto3 to the
    gateway's @connections API.
    """
    monkeypatch.setattr(sys, "path", list(sys.path))
    before = set(sys.modules)
    adapters: list[LambdaAdapter] = []

    def load(name: str) -> App:
        app = load_app(str(EXAMPLES / name))
        if request.param == "gateway":
            return app
        store = open_store(dynamodb_store_url(request))  # moto server, over HTTP
        adapter = LambdaAdapter(app, store, management_endpoint=LAMBDA_MODE_ENDPOINT)
        adapters.append(adapter)
        return adapter.as_app()

    yield load
    for adapter in adapters:
        adapter.close()
    for name in set(sys.modules) - before:
        module_file = getattr(sys.modules[name], "__file__", None) or ""
        if module_file.startswith(str(EXAMPLES)):
            del sys.modules[name]


def assert_silent(*clients: ClientConnection) -> None:
    """No frame arrives on any of `clients` within QUIET seconds."""
    time.sleep(QUIET)
    for ws in clients:
        with pytest.raises(TimeoutError):
            got = ws.recv(timeout=0)
            pytest.fail(f"expected no message, got {got!r}")


def drain(*clients: ClientConnection) -> list[str | bytes]:
    """Everything that arrives on `clients` within QUIET seconds."""
    time.sleep(QUIET)
    frames: list[str | bytes] = []
    for ws in clients:
        while True:
            try:
                frames.append(ws.recv(timeout=0))
            except TimeoutError:
                break
    return frames


def recv_json(ws: ClientConnection) -> Any:
    frame = recv(ws)
    assert isinstance(frame, str), f"expected a text frame, got {frame!r}"
    return json.loads(frame)


@contextmanager
def connected(gateway: TestGateway, count: int) -> Iterator[list[WebSocket]]:
    """`count` clients of `gateway` (their WebSockets), all closed when the block exits."""
    clients = [gateway.connect() for _ in range(count)]
    try:
        yield [client.websocket for client in clients]
    finally:
        for client in clients:
            client.close()


@contextmanager
def open_clients(server: Any, count: int, query: str = "") -> Iterator[list[ClientConnection]]:
    """`count` connected clients, all closed when the block exits."""
    with ExitStack() as stack:
        yield [stack.enter_context(ws_connect(server.url + query)) for _ in range(count)]


@pytest.fixture
def gateway_of(request: pytest.FixtureRequest) -> Callable[[App], TestGateway]:
    """A TestGateway serving an example: socketless when the gateway calls the handlers
    (what the app does is the point, not the network), on a port in Lambda mode (its sends
    reach the gateway's @connections API over HTTP); stopped after the test."""
    socketless = request.node.callspec.params.get("load_example") == "gateway"

    def start(app: App) -> TestGateway:
        gateway = TestGateway(app, socketless=socketless).start()
        request.addfinalizer(gateway.stop)
        return gateway

    return start


def _live_ids(server: Any) -> list[str]:
    """The connection ids the gateway lists at GET /{stage}/@connections."""
    with urllib.request.urlopen(server.management_url + "/@connections", timeout=5) as response:
        return list(json.load(response)["connections"])


def wait_until(predicate: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 5 * TIMEOUT_FACTOR
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


# -- echo.py ---------------------------------------------------------------------------


ECHO_MESSAGES = [
    json.dumps({"hello": "world", "n": [1, 2, 3]}),  # JSON, even with an "action" missing
    json.dumps({"action": "anything", "data": 1}),  # JSON naming an action
    "just some text, not JSON {",
    "héllo ✓ 🎉 日本語 — ünïcödé",
    '  {"a":   1}\n\t  trailing  \r\n',  # whitespace inside and around
    "x" * (32 * 1024),  # 32 KB: the biggest message a browser can send (one frame)
]


def test_echo_returns_each_frame_unchanged_to_its_sender_only(
    load_example: Callable[[str], App],
) -> None:
    """echo.py sends every text frame back to its sender byte for byte, and to nobody else."""
    app = load_example("echo.py")
    with run_gateway(app) as server:
        with open_clients(server, 2) as (sender, other):
            for message in ECHO_MESSAGES:
                sender.send(message)
                assert recv(sender) == message
            assert_silent(other, sender)


def test_echo_keeps_each_clients_messages_apart(load_example: Callable[[str], App]) -> None:
    """With several clients talking at once, each gets back exactly its own messages, in order."""
    app = load_example("echo.py")
    with run_gateway(app) as server:
        with open_clients(server, 3) as clients:
            for round_ in range(5):
                for index, ws in enumerate(clients):
                    ws.send(f"client {index} round {round_}")
            for index, ws in enumerate(clients):
                got = [recv(ws) for _ in range(5)]
                assert sorted(got) == [f"client {index} round {r}" for r in range(5)]
            assert_silent(*clients)


# -- broadcast.py ----------------------------------------------------------------------


JSON_VALUES = ["hello everyone", 42.5, -3, {"user": "ann", "tags": ["a", "b"], "ok": True}]


def test_broadcast_on_message_sends_data_as_json_to_everyone(
    load_example: Callable[[str], App],
) -> None:
    """broadcast.py's onMessage sends `data`, serialised as JSON, to every connection."""
    app = load_example("broadcast.py")
    with run_gateway(app) as server:
        with open_clients(server, 3) as clients:
            for data in JSON_VALUES:
                clients[1].send(json.dumps({"action": "onMessage", "data": data}))
                for ws in clients:  # the sender included
                    assert recv_json(ws) == data
            assert_silent(*clients)  # exactly one copy each


def test_broadcast_default_sends_frame_unchanged_to_everyone(
    load_example: Callable[[str], App],
) -> None:
    """broadcast.py sends any frame that is not onMessage, unchanged, to every connection."""
    app = load_example("broadcast.py")
    messages = [
        "plain text, no JSON",
        json.dumps({"action": "nothing-like-this", "data": 1}),
        '  {"data": "no action"}  ',
        "ünïcödé ✓",
    ]
    with run_gateway(app) as server:
        with open_clients(server, 3) as clients:
            for message in messages:
                clients[0].send(message)
                for ws in clients:
                    assert recv(ws) == message
            assert_silent(*clients)


def test_broadcast_skips_closed_clients_and_still_reaches_the_others(
    load_example: Callable[[str], App],
) -> None:
    """After one client closes, broadcasts still reach every remaining client."""
    app = load_example("broadcast.py")
    with run_gateway(app) as server:
        with open_clients(server, 4) as clients:
            leaver = clients.pop(2)
            leaver.close()
            wait_until(lambda: len(_live_ids(server)) == 3, "the closed client to leave")
            clients[0].send(json.dumps({"action": "onMessage", "data": {"n": 1}}))
            for ws in clients:
                assert recv_json(ws) == {"n": 1}
            clients[1].send("second, via $default")
            for ws in clients:
                assert recv(ws) == "second, via $default"
            assert_silent(*clients)


# -- topics.py -------------------------------------------------------------------------


def _topic_frame(type_: str, topic: Any = None, **extra: Any) -> str:
    body: dict[str, Any] = {"type": type_, **extra}
    if topic is not None:
        body["topic"] = topic
    return json.dumps(body)


def subscribe(
    publisher: ClientConnection,
    topic: str,
    subscribers: list[ClientConnection],
    bystanders: list[ClientConnection] = (),  # type: ignore[assignment]
    *,
    key: str = "type",
    publish: str = "message",
) -> None:
    """Subscribe `subscribers` to `topic` and wait until each provably receives it.

    `publisher` publishes probes until every subscriber got one; then every client is
    drained so that tests start from silence.
    """
    for ws in subscribers:
        ws.send(json.dumps({key: "subscribe", "topic": topic}))
    pending = list(subscribers)
    deadline = time.monotonic() + 5 * TIMEOUT_FACTOR
    while pending:
        assert time.monotonic() < deadline, "subscriptions never took effect"
        publisher.send(json.dumps({key: publish, "topic": topic, "data": "__probe__"}))
        for ws in list(pending):
            try:
                frame = ws.recv(timeout=0.05)
            except TimeoutError:
                continue
            assert json.loads(frame) == {"topic": topic, "data": "__probe__"}
            pending.remove(ws)
    for frame in drain(publisher, *subscribers, *bystanders):
        assert json.loads(frame) == {"topic": topic, "data": "__probe__"}, frame


def test_topics_message_reaches_the_other_subscribers_only(
    load_example: Callable[[str], App],
    gateway_of: Callable[[App], TestGateway],
) -> None:
    """A topic message goes to every other subscriber of that topic, not to the sender."""
    app = load_example("topics.py")
    gateway = gateway_of(app)
    with connected(gateway, 5) as clients:
        publisher, sub_a, sub_b, other_topic, nobody = clients
        subscribe(publisher, "news", [sub_a, sub_b], [other_topic, nobody])
        subscribe(publisher, "sport", [other_topic], [sub_a, sub_b, nobody])
        # The sender is itself a subscriber: it must not get its own message back.
        subscribe(nobody, "news", [publisher], [sub_a, sub_b, other_topic])
        data = {"headline": "wsgate ships", "n": 3, "tags": ["x"]}
        publisher.send(_topic_frame("message", "news", data=data))
        assert recv_json(sub_a) == {"topic": "news", "data": data}
        assert recv_json(sub_b) == {"topic": "news", "data": data}
        assert_silent(publisher, other_topic, nobody, sub_a, sub_b)


def test_topics_frame_is_json_with_topic_and_data(
    load_example: Callable[[str], App], gateway_of: Callable[[App], TestGateway]
) -> None:
    """Subscribers receive {"topic": T, "data": X} as JSON text, for any JSON value X."""
    app = load_example("topics.py")
    gateway = gateway_of(app)
    with connected(gateway, 2) as clients:
        publisher, sub = clients
        subscribe(publisher, "t", [sub])
        for data in ["text", 7, None, [1, "two"], {"nested": {"ok": True}}]:
            publisher.send(_topic_frame("message", "t", data=data))
            assert recv_json(sub) == {"topic": "t", "data": data}
        publisher.send(_topic_frame("message", "t"))  # no data at all
        assert recv_json(sub) == {"topic": "t", "data": None}


def test_topics_nothing_arrives_after_unsubscribe(
    load_example: Callable[[str], App], gateway_of: Callable[[App], TestGateway]
) -> None:
    """After unsubscribing from T a client receives nothing more from T; the others still do."""
    app = load_example("topics.py")
    gateway = gateway_of(app)
    with connected(gateway, 3) as clients:
        publisher, leaving, staying = clients
        subscribe(publisher, "room", [leaving, staying])
        leaving.send(_topic_frame("unsubscribe", "room"))
        # Unsubscribe sends no reply, and messages run concurrently (as on AWS): publish
        # probes until one provably misses `leaving`, i.e. the unsubscribe took effect.
        for attempt in range(20):
            probe = {"topic": "room", "data": f"probe {attempt}"}
            publisher.send(_topic_frame("message", "room", data=probe["data"]))
            assert recv_json(staying) == probe
            if not drain(leaving):
                break
        else:
            pytest.fail("the unsubscribe never took effect")
        publisher.send(_topic_frame("message", "room", data="after"))
        assert recv_json(staying) == {"topic": "room", "data": "after"}
        assert_silent(leaving, publisher)


def test_topics_without_a_topic_get_an_error_frame(
    load_example: Callable[[str], App], gateway_of: Callable[[App], TestGateway]
) -> None:
    """subscribe/unsubscribe/message without a usable topic answer the sender with an error."""
    app = load_example("topics.py")
    gateway = gateway_of(app)
    with connected(gateway, 2) as (sender, other):
        for type_ in ["subscribe", "unsubscribe", "message"]:
            for topic in [None, "", 5, ["t"]]:
                body: dict[str, Any] = {"type": type_, "data": 1}
                if topic is not None:
                    body["topic"] = topic
                sender.send(json.dumps(body))
                reply = recv_json(sender)
                assert isinstance(reply, dict), reply
                assert isinstance(reply.get("error"), str), (body, reply)
        assert_silent(other, sender)


@pytest.mark.parametrize(
    "message",
    ["not json", json.dumps({"type": "dance"}), json.dumps({"action": "subscribe"}), "[1, 2]"],
)
def test_topics_unknown_frames_get_an_error_frame(
    load_example: Callable[[str], App],
    gateway_of: Callable[[App], TestGateway],
    message: str,
) -> None:
    """A frame with no known type gets an error frame naming the types the app understands."""
    app = load_example("topics.py")
    with connected(gateway_of(app), 1) as (ws,):
        ws.send(message)
        reply = recv_json(ws)
        assert "subscribe" in reply["error"] and "message" in reply["error"]


# -- direct.py -------------------------------------------------------------------------


def who_am_i(ws: ClientConnection, key: str = "action") -> str:
    ws.send(json.dumps({key: "whoAmI"}))
    frame = recv(ws)
    assert isinstance(frame, str)
    return frame


def test_direct_who_am_i_returns_the_bare_connection_id(
    load_example: Callable[[str], App],
) -> None:
    """whoAmI answers with the caller's own 16-character connection id as the bare frame text."""
    app = load_example("direct.py")
    with run_gateway(app) as server:
        with open_clients(server, 2) as clients:
            first, second = (who_am_i(ws) for ws in clients)
            assert len(first) == 16 and len(second) == 16
            assert first != second
            assert sorted(_live_ids(server)) == sorted([first, second])
            # The id is the one the management API knows.
            assert management_client(server).get_connection(ConnectionId=first)["ConnectedAt"]
            assert who_am_i(clients[0]) == first  # stable for the connection's lifetime


def test_direct_send_message_delivers_bare_text_to_the_target_only(
    load_example: Callable[[str], App],
    gateway_of: Callable[[App], TestGateway],
) -> None:
    """sendMessage delivers M, as the bare frame text, to connection ID and nobody else."""
    app = load_example("direct.py")
    messages = ["hello there", "  spaced \n text ", "ünïcödé ✓", '{"json": "as text"}']
    gateway = gateway_of(app)
    with connected(gateway, 3) as (sender, target, bystander):
        target_id = who_am_i(target)
        for message in messages:
            body = {"action": "sendMessage", "connectionId": target_id, "message": message}
            sender.send(json.dumps(body))
            assert recv(target) == message
        assert_silent(sender, bystander, target)


def test_direct_send_message_to_self(
    load_example: Callable[[str], App], gateway_of: Callable[[App], TestGateway]
) -> None:
    """A client can sendMessage to its own connection id and receives M."""
    app = load_example("direct.py")
    with connected(gateway_of(app), 1) as (ws,):
        me = who_am_i(ws)
        ws.send(json.dumps({"action": "sendMessage", "connectionId": me, "message": "note"}))
        assert recv(ws) == "note"


@pytest.mark.parametrize("target", ["AAAAAAAAAAAAAAA=", "closed"], ids=["unknown", "closed"])
def test_direct_send_to_unknown_id_returns_error_to_sender(
    load_example: Callable[[str], App],
    gateway_of: Callable[[App], TestGateway],
    target: str,
) -> None:
    """sendMessage to an id with no open connection answers the sender with a JSON error."""
    app = load_example("direct.py")
    gateway = gateway_of(app)
    with connected(gateway, 2) as clients:
        sender, other = clients
        if target == "closed":
            with connected(gateway, 1) as (leaver,):
                target = who_am_i(leaver)
            wait_until(lambda: target not in gateway.connection_ids(), "the client to leave")
        sender.send(json.dumps({"action": "sendMessage", "connectionId": target, "message": "x"}))
        reply = recv_json(sender)
        assert isinstance(reply, dict) and isinstance(reply.get("error"), str), reply
        assert_silent(other)


@pytest.mark.parametrize(
    "body",
    [{"action": "sendMessage", "message": "m"}, {"action": "sendMessage", "connectionId": "x"}],
    ids=["no-id", "no-message"],
)
def test_direct_incomplete_send_message_returns_error(
    load_example: Callable[[str], App],
    gateway_of: Callable[[App], TestGateway],
    body: dict[str, Any],
) -> None:
    """sendMessage without connectionId or message answers the sender with a JSON error."""
    app = load_example("direct.py")
    with connected(gateway_of(app), 1) as (ws,):
        ws.send(json.dumps(body))
        assert "error" in recv_json(ws)


# -- lambda_chat/app.py ----------------------------------------------------------------


def test_lambda_chat_on_message_broadcasts_data_as_json(
    load_example: Callable[[str], App],
) -> None:
    """lambda_chat's onMessage sends `data` as JSON to every connection, the sender included."""
    app = load_example("lambda_chat/app.py")
    with run_gateway(app) as server:
        with open_clients(server, 3, query="?name=ann") as clients:
            for data in JSON_VALUES:
                clients[2].send(json.dumps({"action": "onMessage", "data": data}))
                for ws in clients:
                    assert recv_json(ws) == data
            assert_silent(*clients)


def test_lambda_chat_broadcast_skips_closed_clients(load_example: Callable[[str], App]) -> None:
    """lambda_chat's broadcast still reaches every open client after one has closed."""
    app = load_example("lambda_chat/app.py")
    with run_gateway(app) as server:
        with open_clients(server, 3) as clients:
            clients.pop(0).close()
            wait_until(lambda: len(_live_ids(server)) == 2, "the closed client to leave")
            clients[0].send(json.dumps({"action": "onMessage", "data": "still here"}))
            for ws in clients:
                assert recv_json(ws) == "still here"


def test_lambda_chat_default_replies_with_error_to_sender_only(
    load_example: Callable[[str], App],
) -> None:
    """lambda_chat's $default answers only the sender, with a JSON frame holding "error"."""
    app = load_example("lambda_chat/app.py")
    messages = ["not json", json.dumps({"action": "nope"}), json.dumps({"data": 1})]
    with run_gateway(app) as server:
        with open_clients(server, 2) as (sender, other):
            for message in messages:
                sender.send(message)
                reply = recv_json(sender)
                assert isinstance(reply, dict), reply
                assert isinstance(reply.get("error"), str), (message, reply)
            assert_silent(other, sender)


def test_lambda_chat_on_message_without_data_replies_with_error(
    load_example: Callable[[str], App],
) -> None:
    """onMessage without `data` answers only the sender with a JSON error frame."""
    app = load_example("lambda_chat/app.py")
    with run_gateway(app) as server:
        with open_clients(server, 2) as clients:
            sender, other = clients
            sender.send(json.dumps({"action": "onMessage"}))
            assert "error" in recv_json(sender)
            assert_silent(other)


# -- auth.py ---------------------------------------------------------------------------


def test_auth_token_names_the_user_on_later_routes(load_example: Callable[[str], App]) -> None:
    """auth.py: a known token connects; whoAmI answers the user the authorizer named, and
    `say` reaches everyone as "user: text"."""
    app = load_example("auth.py")
    with run_gateway(app) as server:
        with (
            ws_connect(server.url + "?token=ann-secret") as ann,
            ws_connect(server.url + "?token=bob-secret") as bob,
        ):
            ann.send(json.dumps({"action": "whoAmI"}))
            assert recv(ann) == "ann"
            bob.send(json.dumps({"action": "whoAmI"}))
            assert recv(bob) == "bob"
            bob.send(json.dumps({"action": "say", "text": "hi"}))
            assert recv(ann) == recv(bob) == "bob: hi"
            assert_silent(ann, bob)


@pytest.mark.parametrize(("query", "status"), [("", 401), ("?token=", 401), ("?token=x", 403)])
def test_auth_refuses_missing_and_unknown_tokens(
    load_example: Callable[[str], App], query: str, status: int
) -> None:
    """auth.py: no token is 401 (the authorizer does not run), an unknown one 403."""
    app = load_example("auth.py")
    with run_gateway(app) as server:
        with pytest.raises(InvalidStatus) as refused:
            ws_connect(server.url + query)
        assert refused.value.response.status_code == status
        assert _live_ids(server) == []


# -- the demo app (`wsgate serve` without TARGET) --------------------------------------


@pytest.fixture
def demo() -> Iterator[Any]:
    from wsgate.demo import app

    with run_gateway(app) as server:
        yield server


def test_demo_echoes_what_is_no_action(demo: Any) -> None:
    """The demo echoes any frame that names none of its actions back to its sender only."""
    messages = [
        "plain text",
        json.dumps({"no": "action"}),
        json.dumps({"action": "unknown", "data": 1}),
        "  spaced ü ✓\n",
    ]
    with open_clients(demo, 2) as clients:
        for message in messages:
            clients[0].send(message)
            assert recv(clients[0]) == message
        assert_silent(*clients)


def test_demo_on_message_broadcasts_data_as_json(demo: Any) -> None:
    """The demo's onMessage sends `data` as JSON to every connection, the sender included."""
    with open_clients(demo, 3) as clients:
        clients[0].send(json.dumps({"action": "onMessage", "data": {"k": [1, "v"]}}))
        for ws in clients:
            assert recv_json(ws) == {"k": [1, "v"]}
        assert_silent(*clients)


def test_demo_publish_reaches_other_subscribers_until_unsubscribe(demo: Any) -> None:
    """The demo's publish goes to the other subscribers of the topic, until they unsubscribe."""
    with open_clients(demo, 4) as clients:
        publisher, sub, other_topic, nobody = clients
        subscribe(publisher, "t", [sub], [other_topic, nobody], key="action", publish="publish")
        subscribe(publisher, "u", [other_topic], [sub, nobody], key="action", publish="publish")
        subscribe(sub, "t", [publisher], [other_topic, nobody], key="action", publish="publish")
        publisher.send(json.dumps({"action": "publish", "topic": "t", "data": [1, 2]}))
        assert recv_json(sub) == {"topic": "t", "data": [1, 2]}
        assert_silent(publisher, other_topic, nobody)

        sub.send(json.dumps({"action": "unsubscribe", "topic": "t"}))
        sub.send(json.dumps({"action": "subscribe"}))  # answered after the unsubscribe
        assert "error" in recv_json(sub)
        publisher.send(json.dumps({"action": "publish", "topic": "t", "data": "late"}))
        assert_silent(sub, publisher, other_topic, nobody)


def test_demo_topic_actions_without_topic_get_error(demo: Any) -> None:
    """The demo's topic actions without a topic answer only the sender with a JSON error."""
    with open_clients(demo, 2) as (ws, bystander):
        for action in ["subscribe", "unsubscribe", "publish"]:
            ws.send(json.dumps({"action": action}))
            assert isinstance(recv_json(ws)["error"], str)
        assert_silent(bystander, ws)


def test_demo_who_am_i_and_send_message(demo: Any) -> None:
    """whoAmI returns the bare 16-char id and sendMessage delivers M to that id only."""
    with open_clients(demo, 3) as clients:
        sender, target, bystander = clients
        target_id = who_am_i(target)
        assert len(target_id) == 16
        assert target_id in _live_ids(demo)
        sender.send(
            json.dumps({"action": "sendMessage", "connectionId": target_id, "message": "psst"})
        )
        assert recv(target) == "psst"
        assert_silent(sender, bystander)


def test_demo_send_message_errors(demo: Any) -> None:
    """A bad sendMessage (unknown id, missing fields) answers only the sender with an error."""
    unknown = {"action": "sendMessage", "connectionId": "AAAAAAAAAAAAAAA=", "message": "m"}
    with open_clients(demo, 2) as (ws, bystander):
        for body in [unknown, {"action": "sendMessage", "message": "m"}]:
            ws.send(json.dumps(body))
            assert isinstance(recv_json(ws)["error"], str)
        assert_silent(bystander, ws)
