"""What a handler's return value means to the gateway, and the gateway's error frames.

Pure. `$connect`: a Lambda proxy response decides the handshake (spec section 4.1).
Message routes: the result is sent back only on routes with a route response (two-way),
as the `body` of a proxy response, else as JSON (section 4.2).
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any

from wsgate.exceptions import PayloadTooLargeError

#: Texts of the error frames API Gateway sends on the client's socket (spec section 2.4).
FORBIDDEN = "Forbidden"
INTERNAL_SERVER_ERROR = "Internal server error"
ENDPOINT_TIMED_OUT = "Endpoint request timed out"


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


def route_reply(result: Any) -> str | bytes:
    """The frame a two-way route sends back for a handler result.

    A dict is a proxy response: its `body` is sent (an empty message if there is none, as
    observed on AWS); `isBase64Encoded` bodies are decoded, then sent as text if UTF-8.
    Any other value is sent as its JSON text, the way Lambda serialises it.
    """
    if isinstance(result, dict):
        body = result.get("body")
        if body is None:
            return ""
        if not isinstance(body, str):
            return json.dumps(body)
        if result.get("isBase64Encoded") is True:
            try:
                raw = base64.b64decode(body, validate=True)
            except (binascii.Error, ValueError):
                return body
            try:
                return raw.decode("utf-8")
            except UnicodeDecodeError:
                return raw
        return body
    return json.dumps(result)
