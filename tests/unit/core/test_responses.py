"""Handler results and error frames (docs/compatibility.md §2.4 and §4)."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from wsgate.core.responses import (
    ENDPOINT_TIMED_OUT,
    FORBIDDEN,
    INTERNAL_SERVER_ERROR,
    ReplyError,
    connect_decision,
    error_frame,
    outbound_frame,
    route_reply,
)
from wsgate.exceptions import PayloadTooLargeError


def test_error_frame_byte_exact() -> None:
    """The error frame reproduces AWS's irregular spacing byte for byte."""
    assert (
        error_frame("Forbidden", "XDmENcnwIE0CFEQ=", "XDmGEE2RoE0FRdQ=")
        == '{"message": "Forbidden", "connectionId":"XDmENcnwIE0CFEQ=", '
        '"requestId":"XDmGEE2RoE0FRdQ="}'
    )


def test_error_frame_texts() -> None:
    """The gateway's error texts are AWS's."""
    assert FORBIDDEN == "Forbidden"
    assert INTERNAL_SERVER_ERROR == "Internal server error"
    assert ENDPOINT_TIMED_OUT == "Endpoint request timed out"
    assert error_frame(INTERNAL_SERVER_ERROR, "X", "Y") == (
        '{"message": "Internal server error", "connectionId":"X", "requestId":"Y"}'
    )


def test_error_frame_is_json() -> None:
    """The error frame is valid JSON even when values need escaping."""
    frame = error_frame('say "hi"', "a\\b", "r")
    assert json.loads(frame) == {"message": 'say "hi"', "connectionId": "a\\b", "requestId": "r"}


def test_connect_none_accepts() -> None:
    """A $connect handler returning None accepts the connection with 200."""
    decision = connect_decision(None)
    assert decision.accepted
    assert decision.status == 200
    assert decision.subprotocol is None
    assert decision.problem is None


@pytest.mark.parametrize("status", [200, 201, 204, 299])
def test_connect_2xx_accepts(status: int) -> None:
    """Any 2xx statusCode accepts the handshake."""
    decision = connect_decision({"statusCode": status, "body": "ignored"})
    assert decision.accepted
    assert decision.status == status


def test_connect_without_status_code_accepts() -> None:
    """A dict without statusCode is taken as 200."""
    assert connect_decision({}).status == 200
    assert connect_decision({"body": "x"}).accepted


@pytest.mark.parametrize("status", [300, 400, 401, 403, 500, 503])
def test_connect_non_2xx_refuses_with_that_status(status: int) -> None:
    """A non-2xx statusCode refuses the handshake with exactly that status."""
    decision = connect_decision({"statusCode": status})
    assert not decision.accepted
    assert decision.status == status
    assert decision.problem is None


@pytest.mark.parametrize("result", ["ok", 200, ["statusCode", 200], True])
def test_connect_non_dict_is_502(result: Any) -> None:
    """A result that is neither None nor a dict is a malformed proxy response: 502."""
    decision = connect_decision(result)
    assert decision.status == 502
    assert not decision.accepted
    assert decision.problem is not None
    assert type(result).__name__ in decision.problem


@pytest.mark.parametrize("status", ["200", 200.0, True, None, 99, 600, -1])
def test_connect_bad_status_code_is_502(status: Any) -> None:
    """A statusCode that is not an int in 100..599 gives 502 with the reason."""
    decision = connect_decision({"statusCode": status})
    assert decision.status == 502
    assert decision.problem is not None
    assert "statusCode" in decision.problem


def test_connect_headers_not_dict_is_502() -> None:
    """Headers that are not a dict make the response malformed: 502."""
    decision = connect_decision({"statusCode": 200, "headers": [("a", "b")]})
    assert decision.status == 502
    assert decision.problem is not None


@pytest.mark.parametrize(
    "name", ["Sec-WebSocket-Protocol", "sec-websocket-protocol", "SEC-WEBSOCKET-PROTOCOL"]
)
def test_connect_subprotocol_any_casing(name: str) -> None:
    """Sec-WebSocket-Protocol is read from the response headers in any casing."""
    decision = connect_decision({"statusCode": 200, "headers": {name: "chat1"}})
    assert decision.accepted
    assert decision.subprotocol == "chat1"


def test_connect_other_headers_ignored() -> None:
    """Headers other than Sec-WebSocket-Protocol do not set a subprotocol."""
    decision = connect_decision({"statusCode": 200, "headers": {"X-Other": "chat1"}})
    assert decision.subprotocol is None
    assert connect_decision({"statusCode": 200, "headers": None}).subprotocol is None


def test_route_reply_body() -> None:
    """A dict result sends its body string, whatever its statusCode."""
    assert route_reply({"statusCode": 200, "body": "hello"}) == "hello"
    assert route_reply({"statusCode": 500, "body": "still sent"}) == "still sent"


def test_route_reply_without_body_is_empty() -> None:
    """A dict result without a body sends an empty text message."""
    assert route_reply({"statusCode": 200}) == ""
    assert route_reply({"statusCode": 200, "body": None}) == ""


def test_route_reply_non_string_body_is_json() -> None:
    """A non-string body is sent as its JSON text."""
    reply = route_reply({"body": {"a": [1, 2]}})
    assert isinstance(reply, str)
    assert json.loads(reply) == {"a": [1, 2]}
    assert route_reply({"body": 5}) == "5"


def test_route_reply_base64_utf8_is_text() -> None:
    """A base64 body decoding to UTF-8 is sent as text."""
    encoded = base64.b64encode("héllo ✓".encode()).decode()
    assert route_reply({"body": encoded, "isBase64Encoded": True}) == "héllo ✓"


def test_route_reply_base64_binary_is_bytes() -> None:
    """A base64 body decoding to non-UTF-8 bytes is sent as binary."""
    raw = b"\xff\x00\xfe\x80"
    reply = route_reply({"body": base64.b64encode(raw).decode(), "isBase64Encoded": True})
    assert reply == raw
    assert isinstance(reply, bytes)


def test_route_reply_base64_flag_must_be_true() -> None:
    """The body is decoded only when isBase64Encoded is literally True."""
    encoded = base64.b64encode(b"hi").decode()
    assert route_reply({"body": encoded, "isBase64Encoded": False}) == encoded
    assert route_reply({"body": encoded, "isBase64Encoded": "true"}) == encoded


def test_route_reply_invalid_base64_sent_as_is() -> None:
    """A body flagged base64 that does not decode is sent unchanged."""
    assert route_reply({"body": "not base64!", "isBase64Encoded": True}) == "not base64!"


@pytest.mark.parametrize(
    ("result", "expected"),
    [
        ("hi", '"hi"'),
        (42, "42"),
        (1.5, "1.5"),
        (True, "true"),
        (None, "null"),
        ([1, "a"], '[1, "a"]'),
    ],
)
def test_route_reply_plain_values_are_json(result: Any, expected: str) -> None:
    """A non-dict result is sent as its JSON text, as Lambda serialises it."""
    assert route_reply(result) == expected


def test_outbound_frame_keeps_text_as_text() -> None:
    """A str is sent as a text frame of its UTF-8 bytes."""
    assert outbound_frame("héllo", 100) == (True, "héllo".encode())


def test_outbound_frame_sends_utf8_bytes_as_text_and_other_bytes_as_binary() -> None:
    """Bytes that decode as UTF-8 go as text; any other bytes as a binary frame."""
    assert outbound_frame(b"plain", 100) == (True, b"plain")
    assert outbound_frame(bytearray(b"\xff\x00"), 100) == (False, b"\xff\x00")


def test_outbound_frame_sends_other_values_as_compact_json() -> None:
    """Dicts, lists and numbers are serialised without spaces, as Lambda would."""
    assert outbound_frame({"a": [1, 2]}, 100) == (True, b'{"a":[1,2]}')


def test_outbound_frame_counts_bytes_not_characters() -> None:
    """The limit is on the encoded size: 3 two-byte characters do not fit in 5 bytes."""
    assert outbound_frame("ééé", 6) == (True, "ééé".encode())
    with pytest.raises(PayloadTooLargeError) as caught:
        outbound_frame("ééé", 5)
    assert (caught.value.size, caught.value.limit) == (6, 5)


def _nested(depth: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(depth):
        value = [value]
    return value


def _circular() -> dict[str, Any]:
    value: dict[str, Any] = {"statusCode": 200}
    value["self"] = value
    return value


@pytest.mark.parametrize(
    ("result", "problem"),
    [
        ("x" * (128 * 1024 - 1), "131073 bytes"),  # its JSON text: 2 quotes more
        ({"body": "x" * (1024 * 1024)}, "1048576 bytes"),
        ({"body": "é" * (64 * 1024 + 1)}, "131074 bytes"),  # counted in UTF-8 bytes
        ({"body": ["x" * (128 * 1024)]}, "131076 bytes"),
        (
            {
                "body": base64.b64encode(b"\xff" * (128 * 1024 + 1)).decode(),
                "isBase64Encoded": True,
            },
            "131073 bytes",
        ),
        (float("nan"), "NaN"),
        ({"body": float("inf")}, "Infinity"),
        ({"statusCode": float("nan"), "body": "ok"}, "NaN"),
        (_nested(100_000), "nested"),
        ({"body": _nested(100_000)}, "nested"),
        (_circular(), "a circular reference"),
        ({"body": _circular()}, "a circular reference"),
        ({"body": "\ud800"}, "UTF-8"),
        ({1j: "complex key", "body": "ok"}, "not JSON"),
        (object(), "not JSON"),
    ],
)
def test_route_reply_refuses_what_api_gateway_cannot_send(result: Any, problem: str) -> None:
    """Over 128 KB, NaN, too deep, circular or not JSON: ReplyError, which the gateway
    answers with the `Internal server error` frame (it catches ValueError)."""
    with pytest.raises(ReplyError, match=problem) as info:
        route_reply(result)
    assert isinstance(info.value, ValueError)


def test_route_reply_limit_is_the_message_limit() -> None:
    """A reply of exactly the limit is sent; the limit can be set (`--max-message-bytes`)."""
    assert route_reply({"body": "x" * (128 * 1024)}) == "x" * (128 * 1024)
    assert route_reply({"body": "x" * 10}, 10) == "x" * 10
    with pytest.raises(ReplyError, match="11 bytes is over the 10-byte"):
        route_reply({"body": "x" * 11}, 10)
