"""Lambda REQUEST authorizers on `$connect`, as API Gateway runs them (docs/compatibility.md §7).

Real gateway, real WebSocket clients: each outcome is what the client's handshake sees
(status and API Gateway's JSON body), whether the authorizer and `$connect` ran, and what
reaches later events as `requestContext.authorizer`.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from websockets.exceptions import InvalidStatus

from tests.conftest import TIMEOUT, TIMEOUT_FACTOR, recv, run_gateway, ws_connect
from tests.integration.test_serverless_apps import serve_functions
from tests.moto_server import isolate_aws_config
from wsgate import App, connections
from wsgate.aws.lambda_handler import LambdaAdapter
from wsgate.core.authorizer import simple_policy
from wsgate.core.limits import Limits
from wsgate.server import Server
from wsgate.store import open_store


def allow(event: dict[str, Any], context: dict[str, Any] | None = None) -> dict[str, Any]:
    """An IAM policy allowing the `$connect` route the event names."""
    result: dict[str, Any] = {
        "principalId": "ann",
        "policyDocument": {
            "Version": "2012-10-17",
            "Statement": [
                {"Action": "execute-api:Invoke", "Effect": "Allow", "Resource": event["methodArn"]}
            ],
        },
    }
    if context is not None:
        result["context"] = context
    return result


class Recorder:
    """An app with an authorizer given by each test, recording every event it sees."""

    def __init__(self, authorize: Callable[[Any, Any], Any], **options: Any) -> None:
        self.authorizer_events: list[Any] = []
        self.events: list[Any] = []
        self.app = App(name="authorized")

        @self.app.authorizer(**options)
        def authorizer(event: Any, context: Any) -> Any:
            self.authorizer_events.append(event)
            return authorize(event, context)

        @self.app.on_connect
        def connect(event: Any, context: Any) -> None:
            self.events.append(event)

        @self.app.on_disconnect
        def disconnect(event: Any, context: Any) -> None:
            self.events.append(event)

        @self.app.route("whoAmI")
        async def who_am_i(event: Any, context: Any) -> None:
            self.events.append(event)
            authorizer = event["requestContext"]["authorizer"]
            await connections.send(event.connection_id, json.dumps(authorizer))

    def routes_run(self) -> list[str]:
        return [event["requestContext"]["routeKey"] for event in self.events]


@contextmanager
def serving(recorder: Recorder, **options: Any) -> Iterator[Server]:
    with run_gateway(recorder.app, **options) as server:
        yield server


def refused(url: str, **kwargs: Any) -> tuple[int, Any]:
    """The status and JSON body of a refused handshake."""
    with pytest.raises(InvalidStatus) as info:
        ws_connect(url, **kwargs).close()
    response = info.value.response
    return response.status_code, json.loads(response.body)


def wait_until(predicate: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


RUNTIME = f"python{sys.version_info.major}.{sys.version_info.minor}"
TOKEN = ["route.request.querystring.token"]
UNAUTHORIZED = (401, {"message": "Unauthorized"})
FORBIDDEN = (403, {"message": "Forbidden"})
INTERNAL = (500, {"message": "Internal server error"})


def test_allowed_client_carries_principal_and_context_on_every_event() -> None:
    """Allow: `$connect`, messages and `$disconnect` see principalId and the context values
    as strings; `$connect`'s also has integrationLatency."""
    context = {"user": "ann", "level": 3, "admin": True, "ratio": 0.5}
    recorder = Recorder(lambda event, _: allow(event, context), identity_sources=TOKEN)
    expected = {"principalId": "ann", "user": "ann", "level": "3", "admin": "true", "ratio": "0.5"}
    with serving(recorder) as server:
        with ws_connect(server.url + "?token=t1") as ws:
            ws.send(json.dumps({"action": "whoAmI"}))
            assert json.loads(recv(ws)) == expected
        wait_until(lambda: len(recorder.events) == 3, "$disconnect")
    connect, message, disconnect = recorder.events
    connect_authorizer = connect["requestContext"]["authorizer"]
    latency = connect_authorizer.pop("integrationLatency")
    assert isinstance(latency, int) and latency >= 0
    assert connect_authorizer == expected
    assert message["requestContext"]["authorizer"] == expected
    assert disconnect["requestContext"]["authorizer"] == expected
    assert len(recorder.authorizer_events) == 1  # never on messages or $disconnect


def test_the_authorizer_event_has_apigateways_request_shape() -> None:
    """type REQUEST, the $connect methodArn, every header including Connection and Upgrade,
    the query string maps and stageVariables, and $connect's requestContext."""
    recorder = Recorder(lambda event, _: allow(event), identity_sources=TOKEN)
    with serving(recorder, api_id="abcdef1234", stage_variables={"env": "test"}) as server:
        with ws_connect(
            server.url + "?token=t1&tag=a&tag=b", additional_headers={"X-Custom": "yes"}
        ):
            pass
        wait_until(lambda: len(recorder.events) == 2, "$disconnect")
    (event,) = recorder.authorizer_events
    assert list(event) == [
        "type",
        "methodArn",
        "headers",
        "multiValueHeaders",
        "queryStringParameters",
        "multiValueQueryStringParameters",
        "stageVariables",
        "requestContext",
    ]
    assert event["type"] == "REQUEST"
    assert (
        event["methodArn"] == "arn:aws:execute-api:us-east-1:000000000000:abcdef1234/dev/$connect"
    )
    headers = {name.lower(): value for name, value in event["headers"].items()}
    assert headers["connection"].lower() == "upgrade"
    assert headers["upgrade"] == "websocket"
    assert headers["content-length"] == "0"
    assert headers["x-custom"] == "yes"
    assert headers["x-forwarded-proto"] == "http"
    assert event["queryStringParameters"] == {"token": "t1", "tag": "b"}
    assert event["multiValueQueryStringParameters"] == {"token": ["t1"], "tag": ["a", "b"]}
    assert event["stageVariables"] == {"env": "test"}
    context = event["requestContext"]
    assert context["routeKey"] == "$connect" and context["eventType"] == "CONNECT"
    assert "authorizer" not in context
    connect_context = recorder.events[0]["requestContext"]
    assert context["connectionId"] == connect_context["connectionId"]
    assert context["requestId"] == connect_context["requestId"]  # one request
    connect_headers = {name.lower() for name in recorder.events[0]["headers"]}
    assert not connect_headers & {"connection", "upgrade", "content-length"}


def test_missing_or_empty_identity_source_is_401_without_invoking() -> None:
    """A missing or empty query parameter, or header: 401, and nothing runs."""
    recorder = Recorder(
        lambda event, _: allow(event),
        identity_sources=[*TOKEN, "route.request.header.X-Auth"],
    )
    with serving(recorder) as server:
        assert refused(server.url) == UNAUTHORIZED
        assert refused(server.url + "?token=", additional_headers={"x-auth": "a"}) == UNAUTHORIZED
        assert refused(server.url + "?token=t1") == UNAUTHORIZED
        # header names match in any case
        with ws_connect(server.url + "?token=t1", additional_headers={"x-AUTH": "a"}):
            pass
    assert len(recorder.authorizer_events) == 1
    assert recorder.routes_run()[:1] == ["$connect"]


def test_no_identity_sources_always_invokes() -> None:
    """An empty identity-source list runs the authorizer for every client."""
    recorder = Recorder(lambda event, _: allow(event), identity_sources=[])
    with serving(recorder) as server, ws_connect(server.url):
        pass
    assert len(recorder.authorizer_events) == 1


@pytest.mark.parametrize(
    "statements",
    [
        [{"Action": "execute-api:Invoke", "Effect": "Deny", "Resource": "*"}],
        [
            {"Action": "execute-api:*", "Effect": "Allow", "Resource": "*"},
            {"Action": "execute-api:Invoke", "Effect": "Deny", "Resource": "arn:aws:*/dev/*"},
        ],
        [
            {
                "Action": "execute-api:Invoke",
                "Effect": "Allow",
                "Resource": "arn:aws:execute-api:*:*:*/prod/$connect",
            }
        ],
    ],
    ids=["deny", "deny-wins", "allow-elsewhere"],
)
def test_deny_or_no_covering_allow_is_403(statements: list[Any]) -> None:
    """A Deny covering $connect, or no Allow covering it: 403, and `$connect` never runs."""
    policy = {"principalId": "x", "policyDocument": {"Statement": statements}}
    recorder = Recorder(lambda event, _: policy, identity_sources=TOKEN)
    with serving(recorder) as server:
        assert refused(server.url + "?token=t1") == FORBIDDEN
    assert recorder.routes_run() == []


def test_wildcard_allow_lets_the_client_in() -> None:
    """An Allow with `*` in the action and the resource covers `$connect`."""
    policy = {
        "principalId": "x",
        "policyDocument": {
            "Version": "2012-10-17",
            "Statement": {"Action": "*", "Effect": "Allow", "Resource": ["arn:aws:execute-api:*"]},
        },
    }
    recorder = Recorder(lambda event, _: policy, identity_sources=TOKEN)
    with serving(recorder) as server, ws_connect(server.url + "?token=t1") as ws:
        ws.send(json.dumps({"action": "whoAmI"}))
        assert json.loads(recv(ws)) == {"principalId": "x"}


def raise_unauthorized(event: Any, context: Any) -> Any:
    raise Exception("Unauthorized")


def crash(event: Any, context: Any) -> Any:
    raise KeyError("token")


def sleep_past_the_timeout(event: Any, context: Any) -> Any:
    time.sleep(1.0 * TIMEOUT_FACTOR)
    return allow(event)


@pytest.mark.parametrize(
    ("authorize", "expected"),
    [
        (raise_unauthorized, UNAUTHORIZED),
        (crash, INTERNAL),
        (sleep_past_the_timeout, INTERNAL),
        (lambda event, _: {"statusCode": 401}, INTERNAL),
        (lambda event, _: None, INTERNAL),
        (lambda event, _: {"principalId": "x"}, INTERNAL),
        (lambda event, _: allow(event, {"user": {"name": "ann"}}), INTERNAL),
        (lambda event, _: allow(event, {"tags": ["a"]}), INTERNAL),
        (lambda event, _: allow(event, {"big": "x" * 8192}), INTERNAL),
    ],
    ids=[
        "Unauthorized",
        "crash",
        "timeout",
        "proxy-response",
        "none",
        "no-policy",
        "nested-context",
        "list-context",
        "over-8KB",
    ],
)
def test_authorizer_failures(authorize: Callable[[Any, Any], Any], expected: Any) -> None:
    """`Exception("Unauthorized")`: 401; any other error, a timeout, a malformed result, a
    context value that is not a string/number/boolean, over 8 KB: 500. No `$connect`."""
    recorder = Recorder(authorize, identity_sources=TOKEN)
    with serving(recorder, limits=Limits(handler_timeout=0.3 * TIMEOUT_FACTOR)) as server:
        assert refused(server.url + "?token=t1") == expected
        time.sleep(0.1)
    assert recorder.routes_run() == []


def test_results_are_not_cached() -> None:
    """Two connections with the same token: the authorizer runs twice, and decides anew."""
    verdicts = iter([True, False])

    def authorize(event: Any, context: Any) -> Any:
        return next(verdicts)

    recorder = Recorder(authorize, identity_sources=TOKEN, simple=True)
    with serving(recorder) as server:
        with ws_connect(server.url + "?token=same"):
            pass
        assert refused(server.url + "?token=same") == FORBIDDEN
    assert len(recorder.authorizer_events) == 2


@pytest.mark.parametrize(
    ("result", "expected"),
    [
        (True, {"principalId": "user"}),
        ({"isAuthorized": True, "context": {"n": 1}}, {"principalId": "user", "n": "1"}),
        ({"isAuthorized": True, "principalId": "ann"}, {"principalId": "ann"}),
        (False, FORBIDDEN),
        ({"isAuthorized": False, "context": {"nested": {}}}, FORBIDDEN),
        ({"isAuthorized": "yes"}, INTERNAL),
        ({"isAuthorized": True, "context": {"nested": {}}}, INTERNAL),
    ],
)
def test_simple_authorizers(result: Any, expected: Any) -> None:
    """`simple=True`: True/False or {"isAuthorized", "context", "principalId"}."""
    recorder = Recorder(lambda event, _: result, identity_sources=TOKEN, simple=True)
    with serving(recorder) as server:
        if isinstance(expected, tuple):
            assert refused(server.url + "?token=t") == expected
            return
        with ws_connect(server.url + "?token=t") as ws:
            ws.send(json.dumps({"action": "whoAmI"}))
            assert json.loads(recv(ws)) == expected


def test_async_authorizer_and_no_connect_route() -> None:
    """An async authorizer works like a sync one; without `$connect`, Allow opens the socket."""
    app = App()
    seen: list[str] = []

    @app.authorizer(identity_sources=["route.request.header.Authorization"])
    async def authorize(event: Any, context: Any) -> Any:
        await asyncio.sleep(0)
        token = event["headers"]["Authorization"]
        seen.append(token)
        effect = "Allow" if token == "Bearer good" else "Deny"
        return {
            "principalId": "p",
            "policyDocument": {
                "Statement": [
                    {
                        "Action": "execute-api:Invoke",
                        "Effect": effect,
                        "Resource": event["methodArn"],
                    }
                ]
            },
        }

    @app.default
    async def echo(event: Any, context: Any) -> None:
        await connections.send(event.connection_id, event["requestContext"]["authorizer"])

    with run_gateway(app) as server:
        with ws_connect(server.url, additional_headers={"Authorization": "Bearer good"}) as ws:
            ws.send("hi")
            assert json.loads(recv(ws)) == {"principalId": "p"}
        assert refused(server.url, additional_headers={"Authorization": "Bearer bad"}) == FORBIDDEN
    assert seen == ["Bearer good", "Bearer bad"]


# -- serverless.yml and SAM apps (wsgate serve FILE): the authorizer in function processes --

AUTH_PY = """
import json
import time


def authorize(event, context):
    token = event["queryStringParameters"]["token"]
    if token == "unauthorized":
        raise Exception("Unauthorized")
    if token == "crash":
        raise RuntimeError("crash")
    if token == "slow":
        time.sleep(10)
    return {
        "principalId": token,
        "policyDocument": {"Version": "2012-10-17", "Statement": [{
            "Action": "execute-api:Invoke",
            "Effect": "Allow" if token.startswith("good") else "Deny",
            "Resource": event["methodArn"],
        }]},
        "context": {"user": token.upper(), "calls": 1},
    }


def connect(event, context):
    return {"statusCode": 200}


def who(event, context):
    return {"statusCode": 200, "body": json.dumps(event["requestContext"]["authorizer"])}
"""

AUTH_YML = f"""
service: guarded
provider:
  name: aws
  runtime: {RUNTIME}
functions:
  auth:
    handler: auth_app.authorize
    timeout: 1
  connect:
    handler: auth_app.connect
    events:
      - websocket:
          route: $connect
          authorizer:
            name: auth
            identitySource: [route.request.querystring.token]
  who:
    handler: auth_app.who
    events:
      - websocket: {{route: whoAmI, routeResponseSelectionExpression: $default}}
"""

AUTH_TEMPLATE = f"""
Transform: AWS::Serverless-2016-10-31
Globals:
  Function: {{Runtime: {RUNTIME}, CodeUri: .}}
Resources:
  Api:
    Type: AWS::ApiGatewayV2::Api
    Properties: {{Name: guarded, ProtocolType: WEBSOCKET}}
  ConnectRoute:
    Type: AWS::ApiGatewayV2::Route
    Properties:
      ApiId: !Ref Api
      RouteKey: $connect
      AuthorizationType: CUSTOM
      AuthorizerId: !Ref Auth
      Target: !Sub integrations/${{ConnectIntegration}}
  ConnectIntegration:
    Type: AWS::ApiGatewayV2::Integration
    Properties:
      ApiId: !Ref Api
      IntegrationType: AWS_PROXY
      IntegrationUri: !Sub "arn:aws:apigateway:${{AWS::Region}}:lambda:path/2015-03-31/\\
        functions/${{ConnectFunction.Arn}}/invocations"
  WhoRoute:
    Type: AWS::ApiGatewayV2::Route
    Properties:
      ApiId: !Ref Api
      RouteKey: whoAmI
      Target: !Sub integrations/${{WhoIntegration}}
  WhoResponse:
    Type: AWS::ApiGatewayV2::RouteResponse
    Properties: {{ApiId: !Ref Api, RouteId: !Ref WhoRoute, RouteResponseKey: $default}}
  WhoIntegration:
    Type: AWS::ApiGatewayV2::Integration
    Properties:
      ApiId: !Ref Api
      IntegrationType: AWS_PROXY
      IntegrationUri: !Sub "arn:aws:apigateway:${{AWS::Region}}:lambda:path/2015-03-31/\\
        functions/${{WhoFunction.Arn}}/invocations"
  Auth:
    Type: AWS::ApiGatewayV2::Authorizer
    Properties:
      ApiId: !Ref Api
      Name: auth
      AuthorizerType: REQUEST
      IdentitySource: [route.request.querystring.token]
      AuthorizerUri: !Sub "arn:aws:apigateway:${{AWS::Region}}:lambda:path/2015-03-31/\\
        functions/${{AuthFunction.Arn}}/invocations"
  AuthFunction:
    Type: AWS::Serverless::Function
    Properties: {{Handler: auth_app.authorize, Timeout: 1}}
  ConnectFunction:
    Type: AWS::Serverless::Function
    Properties: {{Handler: auth_app.connect}}
  WhoFunction:
    Type: AWS::Serverless::Function
    Properties: {{Handler: auth_app.who}}
"""


@pytest.mark.parametrize(
    ("name", "text"), [("serverless.yml", AUTH_YML), ("template.yaml", AUTH_TEMPLATE)]
)
def test_serverless_and_sam_authorizers_run_as_on_aws(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, text: str
) -> None:
    """`wsgate serve FILE`: the file's authorizer runs in its function's processes, before
    `$connect`, with every outcome API Gateway gives."""
    isolate_aws_config(monkeypatch, tmp_path)
    (tmp_path / "auth_app.py").write_text(AUTH_PY)
    path = tmp_path / name
    path.write_text(text)
    with serve_functions(path) as (_, server):
        with ws_connect(server.url + "?token=good-ann") as ws:
            ws.send(json.dumps({"action": "whoAmI"}))
            assert json.loads(recv(ws)) == {
                "principalId": "good-ann",
                "user": "GOOD-ANN",
                "calls": "1",
            }
        assert refused(server.url) == UNAUTHORIZED
        assert refused(server.url + "?token=bob") == FORBIDDEN
        assert refused(server.url + "?token=unauthorized") == UNAUTHORIZED
        assert refused(server.url + "?token=crash") == INTERNAL
        assert refused(server.url + "?token=slow") == INTERNAL  # the function's 1 s timeout


# -- on Lambda: the adapter answers API Gateway's authorizer event ----------------------


def test_the_lambda_adapter_answers_the_authorizer_event() -> None:
    """The authorizer function's event (`type: REQUEST`, `methodArn`) runs the app's
    authorizer: a policy goes back as is, a simple result as the equivalent policy, and
    `Unauthorized` raises so API Gateway answers 401."""
    arn = "arn:aws:execute-api:eu-west-1:123456789012:abcdef1234/prod/$connect"
    event = {
        "type": "REQUEST",
        "methodArn": arn,
        "headers": {},
        "queryStringParameters": {"token": "t"},
        "stageVariables": {},
        "requestContext": {
            "routeKey": "$connect",
            "eventType": "CONNECT",
            "stage": "prod",
            "domainName": "abcdef1234.execute-api.eu-west-1.amazonaws.com",
            "connectionId": "c0nnection1d0A=",
        },
    }
    policy = {"principalId": "p", "policyDocument": {"Statement": []}, "context": {"a": []}}
    for simple, result, expected in [
        (False, policy, policy),  # as is, even when API Gateway will call it malformed
        (True, True, simple_policy(True, arn)),
    ]:
        app = App()
        app.add_authorizer(lambda e, c, r=result: r, identity_sources=TOKEN, simple=simple)
        with LambdaAdapter(app, open_store("memory://")) as adapter:
            assert adapter(dict(event), None) == expected
    app = App()
    app.add_authorizer(raise_unauthorized, identity_sources=TOKEN)
    with (
        LambdaAdapter(app, open_store("memory://")) as adapter,
        pytest.raises(Exception, match="^Unauthorized$"),
    ):
        adapter(dict(event), None)
