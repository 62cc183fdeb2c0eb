"""What a handler's return value means to the gateway, and the gateway's error frames.

Pure. `$connect`: a Lambda proxy response decides the handshake (spec section 4.1).
Message routes: the result is sent back only on routes with a route response (two-way),
as the `body` of a proxy response, else as JSON (section 4.2), and only if API Gateway could
send it: JSON (as Lambda marshals a result) and within the 128 KB message quota.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any

from wsgate.core.limits import Limits
from wsgate.exceptions import PayloadTooLargeError

#: Texts of the error frames API Gateway sends on the client's socket (spec section 2.4).
FORBIDDEN = "Forbidden"
INTERNAL_SERVER_ERROR = "Internal server error"
ENDPOINT_TIMED_OUT = "Endpoint request timed out"
#: A message over the connection's rate (`Limits.message_rate`): AWS's text is not
#: documented; this is HTTP's 429 phrase, in the same frame.
TOO_MANY_REQUESTS = "Too Many Requests"

#: The most a two-way route sends back unless told otherwise: API Gateway's message quota.
DEFAULT_REPLY_LIMIT = Limits().max_message_bytes


class ReplyError(ValueError):
    """A two-way route's result API Gateway could not send: not JSON, or over the limit.

    A ValueError, like the one Lambda's runtime turns into `Runtime.MarshalError` for a
    result it cannot serialise: the caller gets the `Internal server error` frame instead.
    """


def outbound_frame(data: Any, limit: int) -> tuple[bool, bytes]:
    """The frame for data sent to a connection, `(is_text, payload)`, checked against the limit.

    Text stays text; bytes become text when they are UTF-8 and binary otherwise (what the
    spec recommends for `PostToConnection`); anything else is sent as compact JSON text.
    Raises PayloadTooLargeError over `limit` bytes.
    """
    if isinstance(data, str):
        payload = data.encode()
        is_text = True
    elif isinstance(data, bytes | bytearray | memoryview):
        payload = bytes(data)
        try:
            payload.decode("utf-8")
            is_text = True
        except UnicodeDecodeError:
            is_text = False
    else:
        payload = json.dumps(data, separators=(",", ":")).encode()
        is_text = True
    if len(payload) > limit:
        raise PayloadTooLargeError(len(payload), limit)
    return is_text, payload


def error_frame(message: str, connection_id: str, request_id: str) -> str:
    """An error frame, byte for byte as AWS writes it (note the irregular spacing)."""
    return (
        f'{{"message": {json.dumps(message)}, "connectionId":{json.dumps(connection_id)}, '
        f'"requestId":{json.dumps(request_id)}}}'
    )


@dataclass(frozen=True, slots=True)
class ConnectDecision:
    """How to answer the handshake after `$connect`: accept (2xx) or refuse with `status`."""

    status: int
    subprotocol: str | None = None
    problem: str | None = None

    @property
    def accepted(self) -> bool:
        return 200 <= self.status < 300


def connect_decision(result: Any) -> ConnectDecision:
    """Interpret a `$connect` handler's return value.

    `None` accepts: what AWS does with it is unknown (REST would answer 502); wsgate's Lambda
    adapter turns `None` into `{"statusCode": 200}` on AWS too, so an app behaves the same
    in both places. A dict is a proxy response: 2xx accepts, any other status refuses the
    handshake with that status; only `Sec-WebSocket-Protocol` is copied from its headers.
    Anything else is a malformed proxy response: 502, with the reason in `problem`.
    """
    if result is None:
        return ConnectDecision(200)
    if not isinstance(result, dict):
        return ConnectDecision(
            502, problem=f"$connect returned {type(result).__name__}, not a dict"
        )
    status = result.get("statusCode", 200)
    if type(status) is not int or not 100 <= status <= 599:
        return ConnectDecision(502, problem=f"$connect returned an invalid statusCode {status!r}")
    headers = result.get("headers") or {}
    if not isinstance(headers, dict):
        return ConnectDecision(502, problem="$connect returned headers that are not a dict")
    subprotocol = None
    for name, value in headers.items():
        if isinstance(name, str) and name.lower() == "sec-websocket-protocol":
            subprotocol = str(value)
    return ConnectDecision(status, subprotocol)


def route_reply(result: Any, limit: int = DEFAULT_REPLY_LIMIT) -> str | bytes:
    """The frame a two-way route sends back for a handler result.

    A dict is a proxy response: its `body` is sent (an empty message if there is none, as
    observed on AWS); `isBase64Encoded` bodies are decoded, then sent as text if UTF-8.
    Any other value is sent as its JSON text, the way Lambda serialises it.
    Raises ReplyError for a result that is not strict JSON (NaN, Infinity, a circular
    reference, nesting deeper than Python can serialise, other types) or a reply over
    `limit` bytes: API Gateway never sees such a result, or refuses to send it.
    """
    if not isinstance(result, dict):
        return _within(_json(result), limit)
    # Lambda marshals the whole result before API Gateway reads its body.
    _json({key: value for key, value in result.items() if key != "body"})
    body = result.get("body")
    if body is None:
        return ""
    if not isinstance(body, str):
        return _within(_json(body), limit)
    if result.get("isBase64Encoded") is True:
        try:
            raw = base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            return _within(body, limit)
        try:
            return _within(raw.decode("utf-8"), limit)
        except UnicodeDecodeError:
            return _within(raw, limit)
    return _within(body, limit)


def _json(value: Any) -> str:
    """`value` as strict JSON text, or ReplyError saying why it has none."""
    try:
        return json.dumps(value, allow_nan=False)
    except RecursionError:
        raise ReplyError("the result is nested too deeply to serialise as JSON") from None
    except ValueError as exc:
        problem = (
            "a circular reference"
            if "Circular" in str(exc)
            else "NaN or Infinity, which JSON has no form for"
        )
        raise ReplyError(f"the result is not JSON: it holds {problem}") from exc
    except TypeError as exc:
        raise ReplyError(f"the result is not JSON: {exc}") from exc


def _within(reply: str | bytes, limit: int) -> str | bytes:
    """`reply` unchanged if it fits in `limit` bytes (UTF-8 for text), else ReplyError."""
    try:
        size = len(reply) if isinstance(reply, bytes) else len(reply.encode())
    except UnicodeEncodeError as exc:
        raise ReplyError(f"the reply is not UTF-8 text: {exc.reason}") from exc
    if size > limit:
        raise ReplyError(f"the reply of {size} bytes is over the {limit}-byte message limit")
    return reply
