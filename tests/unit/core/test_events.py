"""Lambda proxy event shapes (docs/compatibility.md §3): $connect, MESSAGE and $disconnect."""

from __future__ import annotations

from typing import Any

from wsgate.core.events import (
    ConnectionContext,
    connect_event,
    disconnect_event,
    message_event,
    request_time,
)

DOMAIN = "localhost:8080"
GATEWAY_HEADERS = {
    "Host": DOMAIN,
    "X-Amzn-Trace-Id": "Root=1-65abb07c-000000000000000000000000",
    "X-Forwarded-For": "10.0.0.1",
    "X-Forwarded-Port": "443",
    "X-Forwarded-Proto": "https",
}
NOW = 1705751708326
CONNECTED_AT = 1705751697419


def make_info(user_agent: str | None = "test-agent/1.0", **overrides: Any) -> ConnectionContext:
    values: dict[str, Any] = {
        "connection_id": "R1kmxc2VNjMCFIA=",
        "connected_at": CONNECTED_AT,
        "source_ip": "10.0.0.1",
        "user_agent": user_agent,
        "domain_name": DOMAIN,
        "stage": "dev",
        "api_id": "dl7ptocha9",
    }
    values.update(overrides)
    return ConnectionContext(**values)


def make_connect(
    headers: list[tuple[str, str]] | None = None,
    query: list[tuple[str, str]] | None = None,
    stage_variables: dict[str, str] | None = None,
    info: ConnectionContext | None = None,
) -> dict[str, Any]:
    return connect_event(
        info or make_info(),
        headers=headers if headers is not None else [("Host", DOMAIN)],
        query=query or [],
        gateway_headers=GATEWAY_HEADERS,
        stage_variables=stage_variables,
        request_id="Dwz4lGRyvHcF0KQ=",
        now_ms=NOW,
    )


def make_message(
    body: str = '{"action": "join"}', stage_variables: dict[str, str] | None = None
) -> dict[str, Any]:
    return message_event(
        make_info(),
        route_key="join",
        body=body,
        is_base64=False,
        stage_variables=stage_variables,
        message_id="R1knPc2ntjMCFIA=",
        request_id="R1knPH17NjMFftw=",
        now_ms=NOW,
    )


def make_disconnect(
    stage_variables: dict[str, str] | None = None, info: ConnectionContext | None = None
) -> dict[str, Any]:
    return disconnect_event(
        info or make_info(),
        status_code=1001,
        reason="Going away",
        stage_variables=stage_variables,
        request_id="R1koeHsUtjMFbRw=",
        now_ms=NOW,
    )


def test_request_time_known_epoch() -> None:
    """requestTime is CLF in UTC: 1705751708326 ms is `20/Jan/2024:11:55:08 +0000`."""
    assert request_time(1705751708326) == "20/Jan/2024:11:55:08 +0000"


def test_request_time_other_values() -> None:
    """requestTime zero-pads the day and uses English month names, second by second."""
    assert request_time(1682138781029) == "22/Apr/2023:04:46:21 +0000"
    assert request_time(0) == "01/Jan/1970:00:00:00 +0000"
    assert request_time(1705751708999) == "20/Jan/2024:11:55:08 +0000"
    assert request_time(1705751709000) == "20/Jan/2024:11:55:09 +0000"
    assert request_time(1704067199000) == "31/Dec/2023:23:59:59 +0000"


def test_connect_drops_hop_by_hop_headers_any_case() -> None:
    """Connection, Upgrade and Content-Length are dropped from $connect, whatever their case."""
    event = make_connect(
        headers=[
            ("Host", DOMAIN),
            ("Connection", "Upgrade"),
            ("upgrade", "websocket"),
            ("CONTENT-LENGTH", "0"),
            ("Sec-WebSocket-Version", "13"),
        ]
    )
    lowered = {name.lower() for name in event["headers"]}
    assert not lowered & {"connection", "upgrade", "content-length"}
    assert not {name.lower() for name in event["multiValueHeaders"]} & {
        "connection",
        "upgrade",
        "content-length",
    }
    assert event["headers"]["Sec-WebSocket-Version"] == "13"


def test_connect_keeps_header_casing() -> None:
    """Client header names keep the casing the client sent."""
    event = make_connect(headers=[("HeaderAuth1", "a"), ("x-lower", "b"), ("Host", DOMAIN)])
    assert event["headers"]["HeaderAuth1"] == "a"
    assert event["headers"]["x-lower"] == "b"
    assert "headerauth1" not in event["headers"]
    assert "X-Lower" not in event["headers"]


def test_connect_adds_gateway_headers() -> None:
    """The gateway's X-Forwarded-* and X-Amzn-Trace-Id headers are added to $connect."""
    event = make_connect(headers=[("Host", DOMAIN)])
    for name, value in GATEWAY_HEADERS.items():
        assert event["headers"][name] == value
        assert event["multiValueHeaders"][name] == [value]


def test_connect_gateway_headers_do_not_override_client() -> None:
    """A header the client sent (in any case) is not replaced by the gateway's."""
    event = make_connect(headers=[("Host", DOMAIN), ("x-forwarded-proto", "http")])
    assert event["headers"]["x-forwarded-proto"] == "http"
    assert "X-Forwarded-Proto" not in event["headers"]
    assert event["multiValueHeaders"]["x-forwarded-proto"] == ["http"]


def test_connect_repeated_headers() -> None:
    """For repeated headers `headers` keeps the last value, `multiValueHeaders` all in order."""
    event = make_connect(headers=[("Host", DOMAIN), ("X-Thing", "1"), ("X-Thing", "2")])
    assert event["headers"]["X-Thing"] == "2"
    assert event["multiValueHeaders"]["X-Thing"] == ["1", "2"]


def test_connect_query_string() -> None:
    """Query parameters: last value wins in the single map, all values in the multi map."""
    event = make_connect(query=[("token", "abc"), ("tag", "a"), ("tag", "b")])
    assert event["queryStringParameters"] == {"token": "abc", "tag": "b"}
    assert event["multiValueQueryStringParameters"] == {"token": ["abc"], "tag": ["a", "b"]}


def test_connect_without_query_omits_keys() -> None:
    """With no query string, the query keys are absent, not null."""
    event = make_connect(query=[])
    assert "queryStringParameters" not in event
    assert "multiValueQueryStringParameters" not in event


def test_connect_shape() -> None:
    """$connect has headers, requestContext and isBase64Encoded false, but no body."""
    event = make_connect()
    assert set(event) == {"headers", "multiValueHeaders", "requestContext", "isBase64Encoded"}
    assert event["isBase64Encoded"] is False
    context = event["requestContext"]
    assert context["routeKey"] == "$connect"
    assert context["eventType"] == "CONNECT"
    assert "messageId" not in context
    assert "disconnectStatusCode" not in context


def test_request_context_common_fields() -> None:
    """requestContext carries ids, times, stage, domain and direction as AWS does."""
    context = make_connect()["requestContext"]
    assert context["requestId"] == context["extendedRequestId"] == "Dwz4lGRyvHcF0KQ="
    assert context["requestTime"] == "20/Jan/2024:11:55:08 +0000"
    assert context["requestTimeEpoch"] == NOW
    assert context["connectedAt"] == CONNECTED_AT
    assert context["messageDirection"] == "IN"
    assert context["stage"] == "dev"
    assert context["domainName"] == DOMAIN
    assert context["connectionId"] == "R1kmxc2VNjMCFIA="
    assert context["apiId"] == "dl7ptocha9"
    assert "authorizer" not in context


def test_message_event_shape() -> None:
    """A MESSAGE event has no headers or query keys, the body unchanged and a messageId."""
    body = '{\r\n\t"a": 1\r\n}'
    event = make_message(body)
    assert set(event) == {"requestContext", "body", "isBase64Encoded"}
    assert event["body"] == body
    assert event["isBase64Encoded"] is False
    context = event["requestContext"]
    assert context["messageId"] == "R1knPc2ntjMCFIA="
    assert context["routeKey"] == "join"
    assert context["eventType"] == "MESSAGE"
    assert context["requestId"] == "R1knPH17NjMFftw="


def test_message_event_base64_flag() -> None:
    """is_base64 is passed through to isBase64Encoded."""
    event = message_event(
        make_info(),
        route_key="$default",
        body="AAEC",
        is_base64=True,
        stage_variables=None,
        message_id="m",
        request_id="r",
        now_ms=NOW,
    )
    assert event["isBase64Encoded"] is True
    assert event["body"] == "AAEC"


def test_disconnect_event_shape() -> None:
    """$disconnect carries AWS's fixed header set, no body, and the close code and reason."""
    event = make_disconnect()
    assert set(event) == {"headers", "multiValueHeaders", "requestContext", "isBase64Encoded"}
    assert event["headers"] == {
        "Host": DOMAIN,
        "x-api-key": "",
        "X-Forwarded-For": "",
        "x-restapi": "",
    }
    assert event["multiValueHeaders"] == {
        "Host": [DOMAIN],
        "x-api-key": [""],
        "X-Forwarded-For": [""],
        "x-restapi": [""],
    }
    context = event["requestContext"]
    assert context["routeKey"] == "$disconnect"
    assert context["eventType"] == "DISCONNECT"
    assert context["disconnectStatusCode"] == 1001
    assert context["disconnectReason"] == "Going away"
    assert "messageId" not in context
    assert event["isBase64Encoded"] is False


def test_identity_with_user_agent() -> None:
    """identity carries userAgent (first) and sourceIp when the handshake had a User-Agent."""
    identity = make_connect()["requestContext"]["identity"]
    assert identity == {"userAgent": "test-agent/1.0", "sourceIp": "10.0.0.1"}
    assert list(identity) == ["userAgent", "sourceIp"]


def test_identity_without_user_agent() -> None:
    """identity has only sourceIp when no User-Agent is known, in every event type."""
    info = make_info(user_agent=None)
    for event in (make_connect(info=info), make_disconnect(info=info)):
        assert event["requestContext"]["identity"] == {"sourceIp": "10.0.0.1"}


def test_identity_is_a_copy() -> None:
    """Mutating one event's identity does not leak into the next event of the connection."""
    info = make_info()
    make_connect(info=info)["requestContext"]["identity"]["sourceIp"] = "tampered"
    assert make_disconnect(info=info)["requestContext"]["identity"]["sourceIp"] == "10.0.0.1"


def test_authorizer_in_context() -> None:
    """A connection's authorizer context appears in every event's requestContext."""
    info = make_info(authorizer={"principalId": "user"})
    assert make_connect(info=info)["requestContext"]["authorizer"] == {"principalId": "user"}
    assert make_disconnect(info=info)["requestContext"]["authorizer"] == {"principalId": "user"}


def test_stage_variables_only_when_given() -> None:
    """stageVariables is present only when the stage defines some."""
    variables = {"table": "users"}
    assert make_connect(stage_variables=variables)["stageVariables"] == variables
    assert make_message(stage_variables=variables)["stageVariables"] == variables
    assert make_disconnect(stage_variables=variables)["stageVariables"] == variables
    assert "stageVariables" not in make_connect()
    assert "stageVariables" not in make_message()
    assert "stageVariables" not in make_disconnect()
    assert "stageVariables" not in make_connect(stage_variables={})
