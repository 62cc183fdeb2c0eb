"""Properties of the pure core, checked on generated inputs (hypothesis).

The example-based tests next to this file pin API Gateway's behaviour case by case; these
say what holds for *every* input a client or a handler can produce: route selection
never raises on a body, events carry what came in unchanged and are JSON, a handler's
result maps to an answer or a documented error, and frames reassemble to the message
they were cut from.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from hypothesis import HealthCheck, given, settings, strategies as st

from wsgate.core.close import MESSAGE_TOO_BIG, TOO_MANY_FRAGMENTS
from wsgate.core.events import (
    ConnectionContext,
    connect_event,
    disconnect_event,
    message_event,
)
from wsgate.core.messages import BINARY, CONTINUATION, TEXT, Message, MessageAssembler
from wsgate.core.responses import (
    ConnectDecision,
    ReplyError,
    connect_decision,
    error_frame,
    route_reply,
)
from wsgate.core.routing import (
    CONNECT,
    DEFAULT,
    DISCONNECT,
    NOT_JSON,
    RouteSelector,
    parse_body,
)

#: 100 examples a property, no deadline: the suite runs on two busy cores.
EXAMPLES = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# -- strategies ----------------------------------------------------------------------------

#: Every JSON value (finite floats: JSON has no NaN), nested a few levels.
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5)
    ),
    max_leaves=10,
)

#: Text a client can send: any Unicode scalar value, astral planes included (no lone
#: surrogates: they are not UTF-8, and a text frame carrying one closes with 1007).
client_text = st.text(st.characters(exclude_categories=["Cs"]), max_size=200)

_names = st.text("abcdefghijklmnopqrstuvwxyzABC0123456789_-", min_size=1, max_size=6)
_step = _names.map(lambda name: "." + name) | st.integers(0, 3).map(lambda i: f"[{i}]")
_path = st.lists(_step, max_size=3).map(lambda steps: "request.body" + "".join(steps))
#: Static text that cannot spell `request.body` (which is refused as a missing `$`).
_static = st.text("/:-_|+ABCXYZ0129", min_size=1, max_size=5).filter(
    lambda text: text.strip() == text
)


@st.composite
def expressions(draw: st.DrawFn) -> str:
    """A valid route selection expression: one bare variable, or braced variables and
    static text in any order (text right after a bare variable would extend it)."""
    if draw(st.booleans()):
        return "$" + draw(_path)
    parts = draw(
        st.lists(_path.map(lambda path: "${" + path + "}") | _static, min_size=1, max_size=4)
    )
    expression = "".join(parts)
    return expression if expression.strip() == expression else "$" + draw(_path)


route_sets = st.sets(
    st.sampled_from([CONNECT, DISCONNECT, DEFAULT, "join", "send", "[1, 2]", "", "true", "a/b"])
    | _names,
    max_size=6,
)


# -- route selection (core/routing.py) -----------------------------------------------------


@EXAMPLES
@given(expression=expressions(), body=json_values, routes=route_sets)
def test_selection_of_a_json_body_picks_a_route_there_is_or_the_default(
    expression: str, body: Any, routes: set[str]
) -> None:
    """Any JSON body goes to the route its key names, else `$default` if there is one,
    else nowhere (None); never to `$connect` or `$disconnect`."""
    selector = RouteSelector(expression)
    key = selector.route_key(body)
    chosen = selector.select(body, routes)
    assert isinstance(key, str)
    if key in routes and key not in (CONNECT, DISCONNECT):
        assert chosen == key
    else:
        assert chosen == (DEFAULT if DEFAULT in routes else None)


@EXAMPLES
@given(expression=expressions(), text=client_text, routes=route_sets)
def test_selection_of_any_text_never_raises(expression: str, text: str, routes: set[str]) -> None:
    """Text that is not JSON goes to `$default` (or nowhere); text that is JSON is routed
    on the same value `json.loads` gives."""
    selector = RouteSelector(expression)
    body = parse_body(text)
    chosen = selector.select(body, routes)
    assert chosen is None or chosen in routes
    assert chosen not in (CONNECT, DISCONNECT)
    if body is NOT_JSON:
        assert chosen == (DEFAULT if DEFAULT in routes else None)
    else:
        # compared as JSON: "NaN" parses to nan, which equals nothing, itself included
        assert json.dumps(body) == json.dumps(json.loads(text))


@EXAMPLES
@given(body=json_values)
def test_a_json_text_parses_to_its_value(body: Any) -> None:
    """`parse_body` (the C scanner, called directly) agrees with `json.loads`."""
    for text in (json.dumps(body), json.dumps(body, indent=1), f" \n{json.dumps(body)}\t "):
        assert parse_body(text) == body


# -- events (core/events.py) ---------------------------------------------------------------


def _context(connection_id: str, user_agent: str | None) -> ConnectionContext:
    return ConnectionContext(
        connection_id=connection_id,
        connected_at=1_705_751_697_419,
        source_ip="203.0.113.9",
        user_agent=user_agent,
        domain_name="127.0.0.1:8080",
        stage="dev",
        api_id="a1b2c3d4e5",
    )


@EXAMPLES
@given(
    connection_id=client_text,
    route_key=client_text,
    body=client_text,
    user_agent=st.none() | client_text,
    now_ms=st.integers(0, 2**42),
)
def test_a_message_event_is_json_and_carries_what_came_in(
    connection_id: str, route_key: str, body: str, user_agent: str | None, now_ms: int
) -> None:
    """The body, id and route key arrive unchanged, and the event survives JSON (what
    Lambda would do to it)."""
    event = message_event(
        _context(connection_id, user_agent),
        route_key=route_key,
        body=body,
        is_base64=False,
        stage_variables=None,
        message_id="mid",
        request_id="rid",
        now_ms=now_ms,
    )
    assert json.loads(json.dumps(event)) == event
    assert event.body == body and event["body"] == body
    assert event.connection_id == connection_id
    assert event.route_key == route_key
    assert event["requestContext"]["requestTimeEpoch"] == now_ms


@EXAMPLES
@given(
    headers=st.lists(st.tuples(client_text, client_text), max_size=6),
    query=st.lists(st.tuples(client_text, client_text), max_size=6),
)
def test_a_connect_event_is_json_and_keeps_every_header_value(
    headers: list[tuple[str, str]], query: list[tuple[str, str]]
) -> None:
    """Each header (but Connection, Upgrade, Content-Length) and each query parameter is
    in the multi-value maps, in order; the event survives JSON."""
    event = connect_event(
        _context("id", None),
        headers=headers,
        query=query,
        gateway_headers={},
        stage_variables=None,
        request_id="rid",
        now_ms=0,
    )
    assert json.loads(json.dumps(event)) == event
    kept = [
        (k, v) for k, v in headers if k.lower() not in ("connection", "upgrade", "content-length")
    ]
    for name in {k for k, _ in kept}:
        assert event["multiValueHeaders"][name] == [v for k, v in kept if k == name]
    if query:
        for name in {k for k, _ in query}:
            assert event["multiValueQueryStringParameters"][name] == [
                v for k, v in query if k == name
            ]
    else:
        assert "queryStringParameters" not in event


@EXAMPLES
@given(code=st.integers(0, 65535), reason=client_text)
def test_a_disconnect_event_is_json_with_its_code_and_reason(code: int, reason: str) -> None:
    event = disconnect_event(
        _context("id", "agent"),
        status_code=code,
        reason=reason,
        stage_variables=None,
        request_id="rid",
        now_ms=0,
    )
    assert json.loads(json.dumps(event)) == event
    assert event["requestContext"]["disconnectStatusCode"] == code
    assert event["requestContext"]["disconnectReason"] == reason


# -- handler results (core/responses.py) ---------------------------------------------------

#: What a handler may return: JSON, and things JSON cannot hold (NaN, bytes, sets, objects).
handler_results = st.recursive(
    json_values
    | st.floats()
    | st.binary(max_size=20)
    | st.sets(st.integers(), max_size=3)
    | st.builds(object)
    | st.text(st.characters(), max_size=20),  # lone surrogates included
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text(max_size=8), children, max_size=4)
        | st.fixed_dictionaries(
            {"statusCode": children, "body": children},
            optional={"isBase64Encoded": st.booleans() | children, "headers": children},
        )
    ),
    max_leaves=8,
)


@EXAMPLES
@given(result=handler_results)
def test_connect_decision_answers_every_result(result: Any) -> None:
    """Whatever `$connect` returns is an HTTP status to answer with; never an exception."""
    decision = connect_decision(result)
    assert isinstance(decision, ConnectDecision)
    assert 100 <= decision.status <= 599
    assert decision.accepted == (200 <= decision.status < 300)
    assert decision.subprotocol is None or isinstance(decision.subprotocol, str)


@EXAMPLES
@given(result=handler_results, limit=st.integers(0, 400))
def test_a_route_reply_is_sendable_within_the_limit_or_a_reply_error(
    result: Any, limit: int
) -> None:
    """A two-way route's result becomes text (UTF-8, within `limit` bytes) or bytes within
    `limit`; anything API Gateway could not send is a ReplyError, nothing else."""
    try:
        reply = route_reply(result, limit)
    except ReplyError:
        return
    if isinstance(reply, str):
        assert len(reply.encode()) <= limit
    else:
        assert isinstance(reply, bytes) and len(reply) <= limit
    if not isinstance(result, dict):
        assert isinstance(reply, str) and json.loads(reply) == json.loads(json.dumps(result))


@EXAMPLES
@given(body=client_text, limit=st.integers(0, 400))
def test_a_string_body_is_sent_unchanged_when_it_fits(body: str, limit: int) -> None:
    try:
        reply = route_reply({"statusCode": 200, "body": body}, limit)
    except ReplyError:
        assert len(body.encode()) > limit
    else:
        assert reply == body


@EXAMPLES
@given(message=st.text(), connection_id=st.text(), request_id=st.text())
def test_an_error_frame_is_json_with_what_it_was_given(
    message: str, connection_id: str, request_id: str
) -> None:
    """Even with quotes, control characters or lone surrogates in its parts."""
    frame = json.loads(error_frame(message, connection_id, request_id))
    assert frame == {"message": message, "connectionId": connection_id, "requestId": request_id}


# -- frames to messages (core/messages.py) -------------------------------------------------


@st.composite
def splits(draw: st.DrawFn, data: bytes) -> list[bytes]:
    """`data` cut at any points, empty pieces included."""
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=8)))
    bounds = [0, *cuts, len(data)]
    return [data[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]


def feed(assembler: MessageAssembler, opcode: int, pieces: list[bytes]) -> list[object]:
    """Each piece as one frame (the first with `opcode`), what each frame gave back."""
    outcomes: list[object] = []
    for index, piece in enumerate(pieces):
        kind = opcode if index == 0 else CONTINUATION
        outcomes.append(assembler.frame(kind, index == len(pieces) - 1, piece))
    return outcomes


@EXAMPLES
@given(data=st.data(), text=client_text)
def test_any_split_of_a_text_message_reassembles_to_it(data: st.DataObject, text: str) -> None:
    """Cut anywhere, characters included, a UTF-8 message comes out whole, once, at the
    final frame; the assembler is then ready for the next message."""
    pieces = data.draw(splits(text.encode()))
    assembler = MessageAssembler(len(text.encode()), max_fragments=9, binary_base64=False)
    outcomes = feed(assembler, TEXT, pieces)
    assert outcomes[:-1] == [None] * (len(pieces) - 1)
    assert outcomes[-1] == Message(text, False)
    assert not assembler.in_progress and assembler.held_bytes == 0


@EXAMPLES
@given(data=st.data(), payload=st.binary(max_size=300))
def test_any_split_of_a_binary_message_reassembles_to_its_base64(
    data: st.DataObject, payload: bytes
) -> None:
    pieces = data.draw(splits(payload))
    assembler = MessageAssembler(300, max_fragments=9, binary_base64=True)
    outcomes = feed(assembler, BINARY, pieces)
    assert outcomes[-1] == Message(base64.b64encode(payload).decode(), True)


@EXAMPLES
@given(data=st.data(), text=client_text, limit=st.integers(1, 300))
def test_a_message_over_the_limit_closes_1009_at_the_frame_that_passes_it(
    data: st.DataObject, text: str, limit: int
) -> None:
    """Whatever the split: under the limit the message comes out; over it, the frame
    whose bytes pass the limit closes with 1009 and nothing is kept."""
    encoded = text.encode()
    pieces = data.draw(splits(encoded))
    assembler = MessageAssembler(limit, max_fragments=9, binary_base64=False)
    outcomes = feed(assembler, TEXT, pieces)
    if len(encoded) <= limit:
        assert outcomes[-1] == Message(text, False)
        return
    sizes = [len(piece) for piece in pieces]
    passing = next(i for i in range(len(pieces)) if sum(sizes[: i + 1]) > limit)
    assert outcomes[passing] == MESSAGE_TOO_BIG and MESSAGE_TOO_BIG.code == 1009
    assert outcomes[:passing] == [None] * passing
    assert assembler.held_bytes == 0


@EXAMPLES
@given(frames=st.integers(1, 40), max_fragments=st.integers(1, 40))
def test_a_message_in_too_many_frames_closes_1009(frames: int, max_fragments: int) -> None:
    assembler = MessageAssembler(1000, max_fragments=max_fragments, binary_base64=False)
    outcomes = feed(assembler, TEXT, [b"x"] * frames)
    if frames <= max_fragments:
        assert outcomes[-1] == Message("x" * frames, False)
    else:
        assert outcomes[max_fragments] == TOO_MANY_FRAGMENTS
        assert TOO_MANY_FRAGMENTS.code == 1009
