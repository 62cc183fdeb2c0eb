"""Who may call `@connections` (docs/compatibility.md §6.6): with access keys, only calls
SigV4-signed by one of them, as boto3 signs them; without, only loopback callers, as
decided by the socket's peer address and never by a header.
"""

from __future__ import annotations

import datetime
import http.client
import socket
from typing import Any

import boto3
import pytest
from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import ClientError

from tests.conftest import TIMEOUT, run_gateway, ws_connect
from wsgate import App
from wsgate.exceptions import ConfigError
from wsgate.server import Server
from wsgate.server.modes import ServeConfig
from wsgate.server.signatures import BAD_SIGNATURE, MISSING_TOKEN, UNKNOWN_KEY

KEY_ID, SECRET = "AKIAWSGATEMANAGER001", "manager-secret"
KEYS = {KEY_ID: SECRET}


def echo_app() -> App:
    app = App(name="managed")

    @app.route("$default")
    async def default(event: Any, context: Any) -> None:
        pass

    return app


def client(server: Server, key_id: str = KEY_ID, secret: str = SECRET, **config: Any) -> Any:
    """boto3's real apigatewaymanagementapi client, signing with the given key."""
    return boto3.client(
        "apigatewaymanagementapi",
        endpoint_url=server.management_url,
        region_name="eu-central-1",
        aws_access_key_id=key_id,
        aws_secret_access_key=secret,
        config=Config(retries={"max_attempts": 1}, **config),
    )


def forbidden_message(call: Any) -> str:
    with pytest.raises(ClientError) as info:
        call()
    error = info.value.response
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert error["Error"]["Code"] == "ForbiddenException"
    return str(error["Error"]["Message"])


def test_calls_signed_with_a_known_key_are_answered() -> None:
    with run_gateway(echo_app(), access_keys=KEYS) as server, ws_connect(server.url) as ws:
        (cid,) = server.gateway.live
        signed = client(server)
        signed.post_to_connection(ConnectionId=cid, Data=b"hello")
        assert ws.recv(timeout=TIMEOUT) == "hello"
        assert signed.get_connection(ConnectionId=cid)["Identity"]["SourceIp"] == "127.0.0.1"
        signed.delete_connection(ConnectionId=cid)


@pytest.mark.parametrize(
    ("how", "message"),
    [
        ("wrong secret", BAD_SIGNATURE),
        ("unknown key", UNKNOWN_KEY),
        ("unsigned", MISSING_TOKEN),
    ],
)
def test_calls_not_signed_by_a_known_key_get_403(how: str, message: str) -> None:
    """Loopback callers included: with keys, the signature decides; nothing is sent."""
    with run_gateway(echo_app(), access_keys=KEYS) as server, ws_connect(server.url) as ws:
        (cid,) = server.gateway.live
        if how == "wrong secret":
            caller = client(server, secret="not-the-secret")
        elif how == "unknown key":
            caller = client(server, key_id="AKIAUNKNOWN000000000")
        else:
            caller = client(server, signature_version=UNSIGNED)
        assert forbidden_message(lambda: caller.post_to_connection(ConnectionId=cid, Data=b"x"))
        assert forbidden_message(lambda: caller.get_connection(ConnectionId=cid)) == message
        assert forbidden_message(lambda: caller.delete_connection(ConnectionId=cid)) == message
        with pytest.raises(TimeoutError):
            ws.recv(timeout=0.2)


def test_a_stale_signature_gets_403(monkeypatch: pytest.MonkeyPatch) -> None:
    stale = datetime.datetime.now(datetime.UTC).replace(tzinfo=None) - datetime.timedelta(minutes=6)
    monkeypatch.setattr("botocore.auth.get_current_datetime", lambda: stale)
    with run_gateway(echo_app(), access_keys=KEYS) as server, ws_connect(server.url):
        (cid,) = server.gateway.live
        message = forbidden_message(lambda: client(server).get_connection(ConnectionId=cid))
        assert message.startswith("Signature expired: ")


def test_without_keys_loopback_callers_need_no_signature() -> None:
    with run_gateway(echo_app()) as server, ws_connect(server.url) as ws:
        (cid,) = server.gateway.live
        client(server, signature_version=UNSIGNED).post_to_connection(ConnectionId=cid, Data=b"hi")
        assert ws.recv(timeout=TIMEOUT) == "hi"


def _this_hosts_address() -> str | None:
    """An address of this machine that is not loopback, or None."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.connect(("192.0.2.1", 9))  # no packet is sent: it only picks a route
        address = str(probe.getsockname()[0])
    except OSError:
        return None
    finally:
        probe.close()
    return None if address.startswith("127.") else address


def test_a_forged_x_forwarded_for_does_not_make_a_remote_caller_loopback() -> None:
    """The peer address the socket has decides, whatever the headers say."""
    address = _this_hosts_address()
    if address is None:
        pytest.skip("this machine has no address besides loopback")
    with run_gateway(echo_app(), host="0.0.0.0") as server:
        conn = http.client.HTTPConnection(address, server.port, timeout=TIMEOUT)
        conn.request(
            "GET",
            "/dev/@connections",
            headers={
                "Host": f"127.0.0.1:{server.port}",
                "X-Forwarded-For": "127.0.0.1",
                "X-Real-IP": "127.0.0.1",
                "Forwarded": "for=127.0.0.1",
            },
        )
        response = conn.getresponse()
        assert response.status == 403
        assert response.getheader("x-amzn-ErrorType") == "ForbiddenException"
        assert b"loopback" in response.read()
        conn.close()


def test_remote_management_without_keys_is_refused_unless_insecure() -> None:
    with pytest.raises(ConfigError, match="--insecure-management"):
        ServeConfig(allow_remote_management=True).check()
    ServeConfig(allow_remote_management=True, insecure_management=True).check()
    ServeConfig(allow_remote_management=True, access_keys_file="keys.txt").check()
