"""`AWS_IAM` on `$connect`: SigV4-signed upgrade requests (docs/compatibility.md §7.7).

Real gateway, real WebSocket clients; the signatures are made by botocore, as an AWS
client makes them: in the `Authorization` header (`SigV4Auth`) or in a presigned URL
(`SigV4QueryAuth`).
"""

from __future__ import annotations

import datetime
import json
import sys
from typing import Any

import pytest
from botocore.auth import SigV4Auth, SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from websockets.exceptions import InvalidStatus

from tests.conftest import recv, run_gateway, ws_connect
from wsgate import App
from wsgate.exceptions import ConfigError
from wsgate.server import Server

KEY_ID, SECRET = "AKIAWSGATELOCAL00001", "local/secret+key"
KEYS = {KEY_ID: SECRET, "AKIAWSGATELOCAL00002": "another-secret"}


def iam_app() -> tuple[App, list[Any]]:
    events: list[Any] = []
    app = App(name="iam", authorization="AWS_IAM")

    @app.on_connect
    def connect(event: Any, context: Any) -> None:
        events.append(event)

    @app.route("whoAmI", return_response=True)
    def who_am_i(event: Any, context: Any) -> Any:
        return {"statusCode": 200, "body": json.dumps(event["requestContext"]["identity"])}

    return app, events


def signed_headers(server: Server, key_id: str = KEY_ID, secret: str = SECRET) -> dict[str, str]:
    """The headers botocore's SigV4Auth adds to a GET of the WebSocket URL."""
    request = AWSRequest(method="GET", url=server.url.replace("ws://", "http://", 1))
    SigV4Auth(Credentials(key_id, secret), "execute-api", "eu-west-1").add_auth(request)
    return {name: request.headers[name] for name in ("Authorization", "X-Amz-Date")}


def presigned_url(server: Server, secret: str = SECRET, query: str = "") -> str:
    """A presigned WebSocket URL, as botocore's SigV4QueryAuth makes one."""
    url = server.url.replace("ws://", "http://", 1) + (f"?{query}" if query else "")
    request = AWSRequest(method="GET", url=url)
    SigV4QueryAuth(Credentials(KEY_ID, secret), "execute-api", "us-east-1", expires=60).add_auth(
        request
    )
    return str(request.url).replace("http://", "ws://", 1)


def refusal(url: str, **options: Any) -> tuple[int, Any]:
    with pytest.raises(InvalidStatus) as info:
        ws_connect(url, **options)
    response = info.value.response
    return response.status_code, json.loads(response.body)


def test_a_header_signed_handshake_is_accepted_with_the_callers_identity() -> None:
    """The identity carries the access key and IAM-style caller fields on every event."""
    app, events = iam_app()
    with run_gateway(app, access_keys=KEYS) as server:
        with ws_connect(server.url, additional_headers=signed_headers(server)) as ws:
            ws.send(json.dumps({"action": "whoAmI"}))
            identity = json.loads(recv(ws))
    assert identity["accessKey"] == KEY_ID
    assert identity["caller"] == identity["user"] == KEY_ID
    assert identity["userArn"] == f"arn:aws:iam::000000000000:user/{KEY_ID}"
    assert identity["sourceIp"] == "127.0.0.1"
    assert events[0]["requestContext"]["identity"] == identity


def test_a_presigned_url_is_accepted() -> None:
    app, events = iam_app()
    with run_gateway(app, access_keys=KEYS) as server:
        with ws_connect(presigned_url(server, query="room=a%20b")) as ws:
            ws.send(json.dumps({"action": "whoAmI"}))
            assert json.loads(recv(ws))["accessKey"] == KEY_ID
    assert events[0]["queryStringParameters"]["room"] == "a b"


@pytest.mark.parametrize(
    "how",
    ["unsigned", "wrong secret", "unknown key", "presigned with a wrong secret", "tampered query"],
)
def test_unsigned_or_badly_signed_handshakes_get_403(how: str) -> None:
    """`$connect` never runs for them."""
    app, events = iam_app()
    with run_gateway(app, access_keys=KEYS) as server:
        options: dict[str, Any] = {}
        url = server.url
        if how == "wrong secret":
            options["additional_headers"] = signed_headers(server, secret="not-it")
        elif how == "unknown key":
            options["additional_headers"] = signed_headers(server, key_id="AKIAUNKNOWN")
        elif how == "presigned with a wrong secret":
            url = presigned_url(server, secret="not-it")
        elif how == "tampered query":
            url = presigned_url(server, query="user=ann").replace("user=ann", "user=bob")
        assert refusal(url, **options) == (403, {"message": "Forbidden"})
    assert events == []


def test_a_signature_over_five_minutes_old_gets_403(monkeypatch: pytest.MonkeyPatch) -> None:
    app, _ = iam_app()
    with run_gateway(app, access_keys=KEYS) as server:
        stale = datetime.datetime.now(datetime.UTC).replace(tzinfo=None) - datetime.timedelta(
            minutes=6
        )
        monkeypatch.setattr("botocore.auth.get_current_datetime", lambda: stale)
        headers = signed_headers(server)
        assert refusal(server.url, additional_headers=headers) == (403, {"message": "Forbidden"})


def test_aws_iam_without_access_keys_refuses_to_start() -> None:
    app, _ = iam_app()
    with pytest.raises(ConfigError, match="--access-keys"), run_gateway(app):
        pass


def test_aws_iam_without_botocore_refuses_to_start(monkeypatch: pytest.MonkeyPatch) -> None:
    """One line naming the extra that brings botocore."""
    monkeypatch.setitem(sys.modules, "botocore.auth", None)
    app, _ = iam_app()
    with (
        pytest.raises(ConfigError, match=r"pip install 'wsgate\[aws\]'"),
        run_gateway(app, access_keys=KEYS),
    ):
        pass


def test_aws_iam_and_a_lambda_authorizer_exclude_each_other() -> None:
    app, _ = iam_app()
    with pytest.raises(ConfigError, match="AWS_IAM"):
        app.add_authorizer(lambda event, context: True, identity_sources=[], simple=True)
