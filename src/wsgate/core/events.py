"""Lambda proxy events, shaped as API Gateway sends them to a WebSocket route's function.

Pure: ids and times are passed in. The shapes follow the spec (section 3): keys that AWS
omits are absent, not null; `$connect` carries the client's headers minus `Connection`,
`Upgrade` and `Content-Length` plus the gateway's own; messages carry no headers;
`$disconnect` carries AWS's fixed synthetic header set.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Self

from wsgate.core.routing import CONNECT, DISCONNECT, NOT_JSON

_DROPPED_CONNECT_HEADERS = frozenset({"connection", "upgrade", "content-length"})
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


@dataclass(slots=True)
class ConnectionContext:
    """What the gateway knows about one connection, shared by all of its events."""

    connection_id: str
    connected_at: int  # epoch milliseconds
    source_ip: str
    user_agent: str | None
    domain_name: str
    stage: str
    api_id: str
    authorizer: dict[str, Any] | None = None
    #: The IAM fields API Gateway adds to `identity` for a SigV4-signed `$connect`
    #: (`accessKey`, `caller`, `user`, `userArn`, ...), or None.
    caller: Mapping[str, str] | None = None
    _identity: dict[str, str] = field(init=False, repr=False)
    _template: dict[str, Any] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        identity = {"sourceIp": self.source_ip}
        if self.user_agent is not None:
            identity = {"userAgent": self.user_agent, "sourceIp": self.source_ip}
        if self.caller:
            identity = dict(sorted({**identity, **self.caller}.items()))
        self._identity = identity
        # The keys in AWS's order; the per-event values are filled in by request_context.
        self._template = {
            "routeKey": None,
            "eventType": None,
            "extendedRequestId": None,
            "requestTime": None,
            "messageDirection": "IN",
            "stage": self.stage,
            "connectedAt": self.connected_at,
            "requestTimeEpoch": None,
            "identity": None,
            "requestId": None,
            "domainName": self.domain_name,
            "connectionId": self.connection_id,
            "apiId": self.api_id,
        }

    def request_context(
        self, route_key: str, event_type: str, request_id: str, now_ms: int
    ) -> dict[str, Any]:
        """The `requestContext` common to the three event types (a new dict every time)."""
        context = self._template.copy()
        context["routeKey"] = route_key
        context["eventType"] = event_type
        context["extendedRequestId"] = request_id
        context["requestTime"] = request_time(now_ms)
        context["requestTimeEpoch"] = now_ms
        context["identity"] = self._identity.copy()
        context["requestId"] = request_id
        if self.authorizer is not None:
            context["authorizer"] = dict(self.authorizer)
        return context


class Event(dict[str, Any]):
    """An API Gateway proxy event: a plain dict, plus shortcuts for what handlers read most.

    The gateway parses each message's JSON once, for route selection, and hands the result
    to the handler through `json`, so handlers need not parse the body again. `Event(d)`
    makes one of any event dict (a test's, or the one Lambda passes).
    """

    __slots__ = ("_json",)  # the parsed body; unset until known
    _json: Any

    @classmethod
    def parsed(cls, data: Mapping[str, Any], body_json: Any) -> Self:
        """`data` as an Event whose body is already parsed (`NOT_JSON`: it is not JSON)."""
        event = cls(data)
        event._json = body_json
        return event

    @property
    def connection_id(self) -> str:
        connection_id: str = self["requestContext"]["connectionId"]
        return connection_id

    @property
    def route_key(self) -> str:
        return str(self["requestContext"]["routeKey"])

    @property
    def body(self) -> str | None:
        return self.get("body")

    @property
    def json(self) -> Any:
        """The body parsed as JSON. Raises ValueError if the body is not JSON."""
        try:
            value = self._json
        except AttributeError:
            value = NOT_JSON
        if value is NOT_JSON:
            body = self.get("body")
            if body is None:
                raise ValueError(f"{self.route_key} events have no body")
            value = self._json = json.loads(body)
        return value


_time_cache: tuple[int, str] = (-1, "")


def request_time(now_ms: int) -> str:
    """CLF time as in `requestTime`: `20/Jan/2024:11:55:08 +0000` (UTC, English month)."""
    global _time_cache
    second = now_ms // 1000
    if _time_cache[0] != second:
        t = time.gmtime(second)
        text = (
            f"{t.tm_mday:02d}/{_MONTHS[t.tm_mon - 1]}/{t.tm_year}:"
            f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} +0000"
        )
        _time_cache = (second, text)
    return _time_cache[1]


def single_and_multi_value(
    pairs: Iterable[tuple[str, str]],
) -> tuple[dict[str, str], dict[str, list[str]]]:
    """`headers`/`multiValueHeaders` (or the query string's pair) from name-value pairs."""
    single: dict[str, str] = {}
    multi: dict[str, list[str]] = {}
    for name, value in pairs:
        single[name] = value  # the last value wins, as in REST v1 proxy events
        multi.setdefault(name, []).append(value)
    return single, multi


def connect_event(
    info: ConnectionContext,
    *,
    headers: Iterable[tuple[str, str]],
    query: Iterable[tuple[str, str]],
    gateway_headers: Mapping[str, str],
    stage_variables: Mapping[str, str] | None,
    request_id: str,
    now_ms: int,
) -> Event:
    """The `$connect` event: client headers (casing kept) plus gateway headers, and the query."""
    pairs = [(k, v) for k, v in headers if k.lower() not in _DROPPED_CONNECT_HEADERS]
    present = {k.lower() for k, _ in pairs}
    pairs.extend((k, v) for k, v in gateway_headers.items() if k.lower() not in present)
    single, multi = single_and_multi_value(pairs)
    event = Event(headers=single, multiValueHeaders=multi)
    query_pairs = list(query)
    if query_pairs:
        qs, mqs = single_and_multi_value(query_pairs)
        event["queryStringParameters"] = qs
        event["multiValueQueryStringParameters"] = mqs
    if stage_variables:
        event["stageVariables"] = dict(stage_variables)
    event["requestContext"] = info.request_context(CONNECT, "CONNECT", request_id, now_ms)
    event["isBase64Encoded"] = False
    return event


def message_event(
    info: ConnectionContext,
    *,
    route_key: str,
    body: str,
    is_base64: bool,
    stage_variables: Mapping[str, str] | None,
    message_id: str,
    request_id: str,
    now_ms: int,
    body_json: Any = NOT_JSON,
) -> Event:
    """A MESSAGE event: the message text unchanged in `body`, no headers.

    `body_json`: the body as the gateway parsed it, for `Event.json`.
    """
    context = info.request_context(route_key, "MESSAGE", request_id, now_ms)
    context["messageId"] = message_id
    event = Event(requestContext=context, body=body, isBase64Encoded=is_base64)
    if stage_variables:
        event["stageVariables"] = dict(stage_variables)
    event._json = body_json
    return event


def disconnect_event(
    info: ConnectionContext,
    *,
    status_code: int,
    reason: str,
    stage_variables: Mapping[str, str] | None,
    request_id: str,
    now_ms: int,
) -> Event:
    """The `$disconnect` event: AWS's fixed header set, the close code and reason."""
    headers = {"Host": info.domain_name, "x-api-key": "", "X-Forwarded-For": "", "x-restapi": ""}
    context = info.request_context(DISCONNECT, "DISCONNECT", request_id, now_ms)
    context["disconnectStatusCode"] = status_code
    context["disconnectReason"] = reason
    event = Event(
        headers=headers,
        multiValueHeaders={k: [v] for k, v in headers.items()},
        requestContext=context,
        isBase64Encoded=False,
    )
    if stage_variables:
        event["stageVariables"] = dict(stage_variables)
    return event
